-- Entry script of the `moreau` command: LuaJIT runs it with the arguments.
os.exit(require('moreau.cli').main({ ... }))
