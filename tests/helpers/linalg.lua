--- Dense linear algebra for tests: small systems solved exactly enough to be
-- the reference a solver is checked against.
local linalg = {}

--- Solves A s = b by Gaussian elimination with partial pivoting, in double.
-- ARGS: A (a Lua array of d rows, each a Lua array of d numbers; changed in
-- place), b (a Lua array of d numbers; changed in place).
-- RETURN: s, a Lua array of d numbers.
function linalg.solve(A, b)
  local d = #b
  for c = 1, d do
    local p = c
    for i = c + 1, d do if math.abs(A[i][c]) > math.abs(A[p][c]) then p = i end end
    A[c], A[p], b[c], b[p] = A[p], A[c], b[p], b[c]
    for i = c + 1, d do
      local f = A[i][c] / A[c][c]
      for j = c, d do A[i][j] = A[i][j] - f * A[c][j] end
      b[i] = b[i] - f * b[c]
    end
  end
  local s = {}
  for i = d, 1, -1 do
    local a = b[i]
    for j = i + 1, d do a = a - A[i][j] * s[j] end
    s[i] = a / A[i][i]
  end
  return s
end

return linalg
