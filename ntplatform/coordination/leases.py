"""Writer leases with fencing tokens, as Lua scripts run atomically inside Redis.

Every timing decision uses Redis's own clock (key TTLs), never a node's. A lease is
``report:writer:{SYMBOL}`` = holder node id with a TTL; each acquisition increments
``report:writer:token:{SYMBOL}``, which is never reset. A report write succeeds only if
the writer key names this node *and* the token key still holds the token this node got
when it acquired: both checked in the same script as the write.
"""

from __future__ import annotations

import enum

# KEYS: writer, token. ARGV: node_id, ttl_ms, token_floor.
# Returns the new fencing token, or 0 when another node holds the lease. The floor is
# the highest token the caller has seen: after Redis lost its data (a restart without
# persistence) tokens still continue upward instead of starting again at 1.
ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if current < tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[3])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
"""

# KEYS: writer, token. ARGV: node_id, token, ttl_ms.
# Returns a WriteStatus code (renewal keeps the same token).
RENEW = """
local holder = redis.call('GET', KEYS[1])
if not holder then return -1 end
if holder ~= ARGV[1] then return -2 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return -3 end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS: writer, token. ARGV: node_id, token.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] and redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS: writer, token, report, stream.
# ARGV: node_id, token, report_json, stream_maxlen, write_kv ('1'/'0'), write_stream ('1'/'0').
FENCED_WRITE = """
local holder = redis.call('GET', KEYS[1])
if not holder then return -1 end
if holder ~= ARGV[1] then return -2 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return -3 end
if ARGV[5] == '1' then redis.call('SET', KEYS[3], ARGV[3]) end
if ARGV[6] == '1' then
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[4], '*', 'report', ARGV[3])
end
return 1
"""


# KEYS: writer, holder's heartbeat (nt:node:{holder}). ARGV: holder.
# Deletes the lease only if it still names that holder and the holder has no heartbeat,
# so a lease taken over meanwhile, or a holder that came back, is left alone. The token
# key is untouched: the next holder's token is higher, and the old holder stays fenced.
# Returns 1 released, 0 held by someone else or gone, -1 holder is alive.
RELEASE_ORPHANED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
redis.call('DEL', KEYS[1])
return 1
"""


class WriteStatus(enum.IntEnum):
    """Outcome of a fenced write or a renewal."""

    OK = 1
    EXPIRED = -1  # nobody holds the lease any more: it lapsed
    OTHER_HOLDER = -2  # another node acquired it
    TOKEN_MISMATCH = -3  # held under our name but with a newer token

    @property
    def is_conflict(self) -> bool:
        """Another writer has taken over: a fencing-token conflict."""
        return self in (WriteStatus.OTHER_HOLDER, WriteStatus.TOKEN_MISMATCH)
