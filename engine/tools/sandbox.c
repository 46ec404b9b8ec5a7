/*
 * moreau-sandbox — run one command confined by the operating system.
 *
 *   moreau-sandbox [--ro=PATH]... [--rw=PATH]... [--env=NAME=VALUE]... [--chdir=DIR]
 *                  [--cpu-seconds=N] [--wall-seconds=N] [--memory=BYTES|unlimited] [--file-size=BYTES]
 *                  -- COMMAND [ARGS]...
 *
 * `moreau run --sandbox` runs a shared recipe through this launcher (the Lua
 * side is bindings/moreau/isolation.lua; the threat model is docs/sandbox.md).
 * The walls, outermost first:
 *
 *   1. rlimits, set here and inherited: CPU seconds (RLIMIT_CPU, default 3600),
 *      address space (RLIMIT_AS, default 8 GiB), largest file written
 *      (RLIMIT_FSIZE, default 4 GiB), no core dumps, at most 256 open files,
 *      at most 512 processes and threads more than the user runs already
 *      (RLIMIT_NPROC; the kernel does not apply it to root); and a wall-clock
 *      limit kept by this launcher (default twice the CPU seconds: CPU time
 *      is counted per process, so children of the run each have their own).
 *   2. bubblewrap (Debian's `bwrap`, the sandbox Flatpak uses) with every
 *      namespace unshared — no network, its own PID, IPC, UTS and cgroup
 *      namespaces, a user namespace with every capability dropped — a new
 *      session (no terminal injection), and a filesystem that holds only: the
 *      system's programs and libraries read-only (/usr and the links into it,
 *      /etc/ld.so.cache, /etc/alternatives), the --ro paths read-only, the --rw
 *      paths writable, an empty /tmp of at most 256 MiB, /proc and a minimal
 *      /dev. The environment is cleared to the --env pairs; no descriptor but
 *      stdout and stderr crosses (stdin is /dev/null), and those two reach the
 *      caller through this launcher with control characters (terminal escape
 *      sequences) shown as '?'. bwrap dies with this process.
 *   3. a seccomp filter (built here with libseccomp, handed to bwrap, applied
 *      just before COMMAND starts) that refuses with EPERM the system calls a
 *      recipe never needs and an escape would: sockets, ptrace and
 *      process_vm_*, mount and namespace calls, new user namespaces through
 *      clone, keyrings, bpf, perf_event_open, userfaultfd, io_uring, kernel
 *      modules, kexec, reboot, swap, TIOCSTI and TIOCLINUX, modify_ldt, and
 *      chmod or file creation with the set-user-ID or set-group-ID bit; clone3
 *      answers ENOSYS so that the C library falls back to clone, whose flags
 *      the filter can see.
 *
 * Exit status: COMMAND's; 128 + 14 (SIGALRM's number) when the wall-clock
 * limit ended it; 125 when the sandbox itself cannot be set up (a message on
 * stderr names the step); 126 for bad arguments.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <seccomp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { EXIT_SETUP = 125, EXIT_USAGE = 126, MAX_ARGS = 4096 };

static void die(int code, const char *fmt, const char *what)
{
    fprintf(stderr, "moreau-sandbox: ");
    fprintf(stderr, fmt, what);
    fputc('\n', stderr);
    exit(code);
}

/* The bwrap command line being built. */
static const char *argv_out[MAX_ARGS];
static int argc_out;

static void push(const char *s)
{
    if (argc_out >= MAX_ARGS - 1)
        die(EXIT_USAGE, "%s", "too many arguments");
    argv_out[argc_out++] = s;
}

static void push3(const char *a, const char *b, const char *c)
{
    push(a);
    push(b);
    if (c)
        push(c);
}

/* A byte count such as 8589934592, 8G, 512M or 64K (powers of 1024). */
static int parse_bytes(const char *s, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || s[0] == '-')
        return -1;
    uint64_t mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1ull << 10, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1ull << 20, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1ull << 30, end++;
    if (*end != '\0' || v == 0 || v > UINT64_MAX / mul)
        return -1;
    *out = (uint64_t)v * mul;
    return 0;
}

/* Sets the soft limit to `soft` and the hard one to `hard`. */
static void set_limit(int resource, uint64_t soft, uint64_t hard, const char *name)
{
    struct rlimit r = {(rlim_t)soft, (rlim_t)hard};
    struct rlimit old;
    if (getrlimit(resource, &old) == 0 && old.rlim_max != RLIM_INFINITY && old.rlim_max < r.rlim_max)
        r.rlim_max = old.rlim_max; /* never ask for more than we have */
    if (r.rlim_cur > r.rlim_max)
        r.rlim_cur = r.rlim_max;
    if (setrlimit(resource, &r) != 0)
        die(EXIT_SETUP, "cannot set the %s limit", name);
}

/* A system path the confined program needs to start: bound read-only when it
 * is a folder or file, re-created as the same link when it is a symbolic link
 * (Debian's /bin, /lib, /lib64, /sbin point into /usr). */
static void system_path(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return;
    if (S_ISLNK(st.st_mode)) {
        static char targets[16][4096];
        static int ntargets;
        if (ntargets >= 16)
            die(EXIT_SETUP, "%s", "too many system links");
        ssize_t n = readlink(path, targets[ntargets], sizeof targets[0] - 1);
        if (n <= 0)
            die(EXIT_SETUP, "cannot read the link %s", path);
        targets[ntargets][n] = '\0';
        push3("--symlink", targets[ntargets++], path);
    } else {
        push3("--ro-bind", path, path);
    }
}

static void deny(scmp_filter_ctx ctx, const char *name, int err)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return; /* not a system call on this architecture */
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(err), nr, 0) != 0)
        die(EXIT_SETUP, "cannot add the seccomp rule for %s", name);
}

/* The filter of wall 3, compiled to BPF in an anonymous file whose descriptor
 * bwrap reads (--seccomp FD). */
static int seccomp_fd(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        die(EXIT_SETUP, "%s", "cannot create a seccomp filter");
    static const char *const refused[] = {
        "socket", "socketcall", "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount",
        "umount2", "pivot_root", "chroot", "unshare", "setns", "move_mount", "open_tree", "fsopen",
        "fsconfig", "fsmount", "fspick", "mount_setattr", "keyctl", "add_key", "request_key", "bpf",
        "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
        "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot",
        "swapon", "swapoff", "acct", "quotactl", "personality", "syslog", "iopl", "ioperm",
        "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "vhangup", "uselib",
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        deny(ctx, refused[i], EPERM);
    deny(ctx, "clone3", ENOSYS);
    deny(ctx, "modify_ldt", EPERM);
    int nr_clone = seccomp_syscall_resolve_name("clone");
    int nr_ioctl = seccomp_syscall_resolve_name("ioctl");
    if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr_clone, 1,
                         SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_NEWUSER, CLONE_NEWUSER)) != 0 ||
        seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr_ioctl, 1,
                         SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCSTI)) != 0 ||
        seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr_ioctl, 1,
                         SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, TIOCLINUX)) != 0)
        die(EXIT_SETUP, "%s", "cannot add the seccomp rules for clone and ioctl");
    /* No set-user-ID or set-group-ID file may be left behind: in the results
     * folder it would outlive the run and run as its owner (as Flatpak's
     * filter, chmod and file creation with S_ISUID or S_ISGID get EPERM). */
    static const struct { const char *name; unsigned mode_arg; int flags_arg; } modes[] = {
        {"chmod", 1, -1}, {"fchmod", 1, -1}, {"fchmodat", 2, -1}, {"fchmodat2", 2, -1},
        {"creat", 1, -1}, {"open", 2, 1}, {"openat", 3, 2},
    };
    for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++) {
        int nr = seccomp_syscall_resolve_name(modes[k].name);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not a system call of this kernel header / architecture */
        for (unsigned bit = 0; bit < 2; bit++) {
            scmp_datum_t m = bit ? S_ISGID : S_ISUID;
            struct scmp_arg_cmp cmp[2] = {SCMP_CMP(modes[k].mode_arg, SCMP_CMP_MASKED_EQ, m, m)};
            unsigned n = 1;
            if (modes[k].flags_arg >= 0) /* open: the mode counts only with O_CREAT or O_TMPFILE */
                cmp[n++] = (struct scmp_arg_cmp)SCMP_CMP((unsigned)modes[k].flags_arg, SCMP_CMP_MASKED_EQ,
                                                          O_CREAT, O_CREAT);
            if (seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM), nr, n, cmp) != 0)
                die(EXIT_SETUP, "cannot add the seccomp rule for %s", modes[k].name);
        }
    }
    int fd = memfd_create("moreau-seccomp", 0);
    if (fd < 0)
        die(EXIT_SETUP, "%s", "cannot create the seccomp program file (memfd_create)");
    if (seccomp_export_bpf(ctx, fd) != 0 || lseek(fd, 0, SEEK_SET) != 0)
        die(EXIT_SETUP, "%s", "cannot write the seccomp program");
    seccomp_release(ctx);
    return fd;
}

static volatile sig_atomic_t child_pid, deadline_passed;

static void on_deadline(int sig)
{
    (void)sig;
    deadline_passed = 1;
    if (child_pid > 0)
        kill((pid_t)child_pid, SIGKILL); /* bwrap: its child dies with it (--die-with-parent) */
}

/* Copies what the run writes to `fd` onto `out`, with every control
 * character but tab, newline and carriage return (ESC first: terminal escape
 * sequences can set the clipboard, retitle windows or redraw the screen)
 * shown as '?'. RETURNS: 0 at end of input, 1 while it is open. */
static int relay(int fd, int out)
{
    unsigned char buf[4096];
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN;
    if (n == 0)
        return 0;
    for (ssize_t i = 0; i < n; i++)
        if ((buf[i] < 0x20 && buf[i] != '\t' && buf[i] != '\n' && buf[i] != '\r') || buf[i] == 0x7f)
            buf[i] = '?';
    for (ssize_t done = 0; done < n;) {
        ssize_t w = write(out, buf + done, (size_t)(n - done));
        if (w < 0 && errno != EINTR)
            return 1; /* our reader is gone: keep draining so the run is not blocked */
        if (w > 0)
            done += w;
    }
    return 1;
}

/* Starts bwrap with only stdout, stderr and the seccomp program open (a
 * descriptor the caller left open — a log file, a socket, a terminal — would be
 * a way out of both walls; stdin reads nothing), and waits for it, killing it
 * when `wall_seconds` pass. RETURNS: its exit status, 128 + a signal that
 * ended it, or 128 + SIGALRM at the deadline. */
static int run_with_deadline(int seccomp, unsigned wall_seconds)
{
    int pipes[2][2];
    if (pipe2(pipes[0], O_CLOEXEC) != 0 || pipe2(pipes[1], O_CLOEXEC) != 0)
        die(EXIT_SETUP, "cannot make the output pipes (%s)", strerror(errno));
    pid_t pid = fork();
    if (pid < 0)
        die(EXIT_SETUP, "cannot start bubblewrap (fork: %s)", strerror(errno));
    if (pid == 0) {
        int null_fd = open("/dev/null", O_RDONLY);
        if (null_fd < 0 || dup2(null_fd, 0) < 0)
            die(EXIT_SETUP, "%s", "cannot point stdin at /dev/null");
        /* stdout and stderr reach the caller through relay() */
        if (dup2(pipes[0][1], 1) < 0 || dup2(pipes[1][1], 2) < 0)
            die(EXIT_SETUP, "%s", "cannot connect the output pipes");
        if ((seccomp > 3 && close_range(3, (unsigned)seccomp - 1, 0) != 0) ||
            close_range((unsigned)seccomp + 1, ~0u, 0) != 0)
            die(EXIT_SETUP, "cannot close inherited descriptors (close_range: %s)", strerror(errno));
        /* bwrap keeps the environment it starts with (as PID 1 inside, its
         * /proc/1/environ is readable there): only a fixed PATH crosses; the
         * command gets the --env pairs (--clearenv, --setenv). */
        if (clearenv() != 0 || setenv("PATH", "/usr/bin:/bin", 1) != 0)
            die(EXIT_SETUP, "%s", "cannot clear the environment");
        execvp("bwrap", (char *const *)argv_out);
        die(EXIT_SETUP, "cannot run bubblewrap (%s): install Debian's bubblewrap package", strerror(errno));
    }
    child_pid = pid;
    struct sigaction sa = {0};
    sa.sa_handler = on_deadline;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGALRM, &sa, NULL) != 0)
        die(EXIT_SETUP, "%s", "cannot set the wall-clock alarm");
    alarm(wall_seconds);
    close(pipes[0][1]);
    close(pipes[1][1]);
    struct pollfd fds[2] = {{pipes[0][0], POLLIN, 0}, {pipes[1][0], POLLIN, 0}};
    int open_pipes = 2;
    while (open_pipes > 0) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int k = 0; k < 2; k++)
            if (fds[k].fd >= 0 && (fds[k].revents & (POLLIN | POLLHUP | POLLERR)) &&
                !relay(fds[k].fd, k == 0 ? 1 : 2)) {
                close(fds[k].fd);
                fds[k].fd = -1;
                open_pipes--;
            }
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            die(EXIT_SETUP, "cannot wait for bubblewrap (%s)", strerror(errno));
    alarm(0);
    if (deadline_passed)
        return 128 + SIGALRM;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* The tasks (threads) this user runs now, from /proc/PID/status: RLIMIT_NPROC
 * counts them all, so the limit is set above this count. */
static uint64_t tasks_of_this_user(void)
{
    uint64_t n = 0;
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    struct dirent *e;
    char path[64], line[256];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%.20s/status", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        unsigned long uid = (unsigned long)-1, threads = 0;
        while (fgets(line, sizeof line, f)) {
            if (strncmp(line, "Uid:", 4) == 0)
                uid = strtoul(line + 4, NULL, 10);
            else if (strncmp(line, "Threads:", 8) == 0)
                threads = strtoul(line + 8, NULL, 10);
        }
        fclose(f);
        if (uid == (unsigned long)getuid())
            n += threads;
    }
    closedir(d);
    return n;
}

static const char *absolute_existing(const char *path, const char *opt)
{
    struct stat st;
    if (path[0] != '/')
        die(EXIT_USAGE, "%s needs an absolute path", opt);
    if (stat(path, &st) != 0)
        die(EXIT_USAGE, "%s names a path that does not exist", opt);
    return path;
}

int main(int argc, char **argv)
{
    /* The run dies with the process that started it (a stopped IDE, `timeout`,
     * a killed shell): this launcher gets SIGKILL when its parent ends, and
     * bwrap, started with --die-with-parent, follows it. */
    pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        die(EXIT_SETUP, "%s", "the process that started the sandbox is gone");
    uint64_t cpu_seconds = 3600, wall_seconds = 0, memory = 8ull << 30, file_size = 4ull << 30;
    const char *chdir_to = NULL;

    push("bwrap");
    push3("--unshare-all", "--die-with-parent", NULL);
    push3("--new-session", "--cap-drop", "ALL");
    push("--clearenv");
    static const char *const system[] = {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                                         "/etc/ld.so.cache", "/etc/alternatives"};
    for (size_t i = 0; i < sizeof system / sizeof system[0]; i++)
        system_path(system[i]);
    push3("--proc", "/proc", NULL);
    push3("--dev", "/dev", NULL);
    /* /tmp is memory (tmpfs): capped, so it cannot hold the machine's RAM past --memory */
    push3("--size", "268435456", NULL);
    push3("--tmpfs", "/tmp", NULL);

    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strncmp(a, "--ro=", 5) == 0) {
            const char *p = absolute_existing(a + 5, "--ro");
            push3("--ro-bind", p, p);
        } else if (strncmp(a, "--rw=", 5) == 0) {
            const char *p = absolute_existing(a + 5, "--rw");
            push3("--bind", p, p);
        } else if (strncmp(a, "--env=", 6) == 0) {
            const char *eq = strchr(a + 6, '=');
            if (!eq || eq == a + 6)
                die(EXIT_USAGE, "--env wants NAME=VALUE, got '%s'", a);
            char *name = strndup(a + 6, (size_t)(eq - (a + 6)));
            if (!name)
                die(EXIT_SETUP, "%s", "out of memory");
            push3("--setenv", name, eq + 1);
        } else if (strncmp(a, "--chdir=", 8) == 0) {
            chdir_to = absolute_existing(a + 8, "--chdir");
        } else if (strncmp(a, "--cpu-seconds=", 14) == 0) {
            if (parse_bytes(a + 14, &cpu_seconds) != 0 || cpu_seconds > 1u << 30)
                die(EXIT_USAGE, "--cpu-seconds wants a positive number of seconds, got '%s'", a + 14);
        } else if (strncmp(a, "--wall-seconds=", 15) == 0) {
            if (parse_bytes(a + 15, &wall_seconds) != 0 || wall_seconds > 1u << 30)
                die(EXIT_USAGE, "--wall-seconds wants a positive number of seconds, got '%s'", a + 15);
        } else if (strcmp(a, "--memory=unlimited") == 0) {
            memory = RLIM_INFINITY; /* for AddressSanitizer builds, whose shadow memory is terabytes */
        } else if (strncmp(a, "--memory=", 9) == 0) {
            if (parse_bytes(a + 9, &memory) != 0 || memory < (1u << 30))
                die(EXIT_USAGE, "--memory wants at least 1G (OpenBLAS and oneDNN reserve their pools at start; "
                    "a byte count, or with K, M, G), got '%s'", a + 9);
        } else if (strncmp(a, "--file-size=", 12) == 0) {
            if (parse_bytes(a + 12, &file_size) != 0)
                die(EXIT_USAGE, "--file-size wants a byte count (or with K, M, G), got '%s'", a + 12);
        } else {
            die(EXIT_USAGE, "unknown option '%s' (see the comment at the top of engine/tools/sandbox.c)", a);
        }
    }
    if (i >= argc)
        die(EXIT_USAGE, "%s", "no command: moreau-sandbox [OPTIONS] -- COMMAND [ARGS]...");
    /* Nothing but the --rw paths and the capped /tmp is writable: the root
     * and /dev are tmpfs (memory) that bwrap makes, read-only from here on
     * (device nodes such as /dev/null stay usable; /dev/shm does not). */
    push3("--remount-ro", "/", NULL);
    push3("--remount-ro", "/dev", NULL);
    if (chdir_to)
        push3("--chdir", chdir_to, NULL);

    char fd_text[16];
    snprintf(fd_text, sizeof fd_text, "%d", seccomp_fd());
    push3("--seccomp", fd_text, NULL);
    push("--");
    for (; i < argc; i++)
        push(argv[i]);
    argv_out[argc_out] = NULL;

    /* CPU: SIGXCPU at the limit (exit 128 + 24, which the caller names), SIGKILL
     * two seconds of CPU later if that signal is ignored. */
    set_limit(RLIMIT_CPU, cpu_seconds, cpu_seconds + 2, "CPU time");
    set_limit(RLIMIT_AS, memory, memory, "address space");
    set_limit(RLIMIT_FSIZE, file_size, file_size, "file size");
    set_limit(RLIMIT_CORE, 0, 0, "core size");
    set_limit(RLIMIT_NOFILE, 256, 256, "open files");
    /* Processes: 512 more than this user runs now, which stops a fork bomb
     * (the kernel does not enforce this limit for root). */
    uint64_t nproc = tasks_of_this_user() + 512;
    set_limit(RLIMIT_NPROC, nproc, nproc, "processes");

    if (wall_seconds == 0)
        wall_seconds = 2 * cpu_seconds;
    return run_with_deadline(atoi(fd_text), (unsigned)wall_seconds);
}
