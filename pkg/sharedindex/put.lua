-- Writes one entry of the shared index, unless the entry already stored is
-- an inner span of the same trace (the rule of pkg/index's innerThan), or
-- a span of another trace that started later (the newer use of the id: a
-- backlog written late must not undo it), and publishes what it wrote.
--
-- KEYS[1]  the response id's key
-- ARGV[1]  the new value (see encode in value.go: fixed-width fields first)
-- ARGV[2]  its time to live, in milliseconds
-- ARGV[3]  the channel to publish on
-- ARGV[4]  the message: the value, a newline, the response id
--
-- Returns 1 when it wrote, 0 when it kept what was stored.
local new = ARGV[1]
local old = redis.call('GET', KEYS[1])
if old and string.sub(old, 1, 1) == '1' and string.sub(old, 2, 33) ~= string.sub(new, 2, 33) then
  if string.sub(new, 66, 85) < string.sub(old, 66, 85) then
    return 0
  end
elseif old and string.sub(old, 1, 1) == '1' then
  local oldSpan, newSpan = string.sub(old, 34, 49), string.sub(new, 34, 49)
  if oldSpan == newSpan then
    return 0
  end
  local none = '0000000000000000'
  local newParent, oldParent = string.sub(new, 50, 65), string.sub(old, 50, 65)
  local inner
  if newParent ~= none and newParent == oldSpan then
    inner = true -- the new span is the stored one's child
  elseif oldParent ~= none and oldParent == newSpan then
    inner = false -- the stored span is the new one's child
  else
    -- Start times are zero-padded decimals: compared as strings, exactly.
    inner = string.sub(new, 66, 85) > string.sub(old, 66, 85)
  end
  if not inner then
    return 0
  end
end
redis.call('SET', KEYS[1], new, 'PX', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
