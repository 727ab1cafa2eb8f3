-- Compare-and-set of a quiz's live state on its version.
-- KEYS[1]: the quiz's key prefix. ARGV[1]: the expected version; then field/value pairs to write, the
-- owed-effects mark (fx, fxr) among them, so a transition and what it owes are stored in one step.
-- Returns 1 if written, 0 if the state changed since it was read.
local state = KEYS[1] .. ':state'
if redis.call('HGET', state, 'ver') ~= ARGV[1] then return 0 end
redis.call('HSET', state, unpack(ARGV, 2))
return 1
