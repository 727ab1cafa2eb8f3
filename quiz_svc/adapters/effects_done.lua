-- Clears a quiz's owed-effects mark if it is still that of the given version (a newer transition owes
-- its own effects, written by its compare-and-set).
-- KEYS[1]: the quiz's key prefix. ARGV[1]: the version whose effects are done.
local state = KEYS[1] .. ':state'
if redis.call('HGET', state, 'fx') ~= ARGV[1] then return 0 end
redis.call('HSET', state, 'fx', '0')
return 1
