/**
 * The Lua scripts of the Redis session store. Each runs atomically inside
 * Redis (no other command interleaves), so processes that share one session
 * never see half an update: a receive number is marked at most once, a send
 * number is handed out at most once.
 *
 * Scripts are sent once per connection by their SHA-1 (EVALSHA); when Redis
 * answers NOSCRIPT (first use, or after a restart flushed its script cache)
 * the source follows once with EVAL, which caches it again.
 *
 * @example
 * ```ts
 * const verdict = await WINDOW_SCRIPT.run(redis, ['atls:s:abc'], [hi, lo, 64]); // 0 fresh, 1 replayed, 2 too old
 * ```
 * @module
 */
import { createHash } from 'node:crypto';

/**
 * The receiver's anti-replay window with exactly the semantics of
 * src/protect/replay-window.ts (RFC 4303 §3.4.3, RFC 6347 §4.1.2.6), kept in
 * three fields of the session's hash: `wh`, `wl` (the highest number
 * accepted, as 32-bit halves: Lua numbers are doubles, exact below 2^53) and
 * `wb` (a ring of bits indexed by number mod capacity, capacity the power of
 * two >= size, at least 32, one byte per 8 numbers). The distance is computed
 * as in `seqDistance`, in doubles, so both implementations round alike.
 *
 * `window_mark(key, hi, lo, size)` tests and, when fresh, records in one
 * step: 0 fresh (now recorded), 1 replayed, 2 too old. Call it only after the
 * message authenticated, so a forgery never moves the window.
 */
export const WINDOW_LUA = `
local TWO32 = 4294967296
local CHUNK = 4096
local function bytes_of(s)
  local t = {}
  for i = 1, #s, CHUNK do
    local part = {string.byte(s, i, math.min(i + CHUNK - 1, #s))}
    for j = 1, #part do t[i + j - 1] = part[j] end
  end
  return t
end
local function string_of(t)
  local parts = {}
  for i = 1, #t, CHUNK do parts[#parts + 1] = string.char(unpack(t, i, math.min(i + CHUNK - 1, #t))) end
  return table.concat(parts)
end
local function window_mark(key, hi, lo, size)
  local cap = 32
  while cap < size do cap = cap * 2 end
  local st = redis.call('HMGET', key, 'wh', 'wl', 'wb')
  local t
  if st[1] then
    if not st[3] or #st[3] ~= cap / 8 then return redis.error_reply('ERR atls: replay window of another size') end
    local behind = (tonumber(st[1]) - hi) * TWO32 + (tonumber(st[2]) - lo)
    t = bytes_of(st[3])
    if behind >= 0 then
      if behind >= size then return 2 end
      local i = lo % cap
      local p = math.floor(i / 8) + 1
      local b = bit.lshift(1, i % 8)
      if bit.band(t[p], b) ~= 0 then return 1 end
      t[p] = bit.bor(t[p], b)
      redis.call('HSET', key, 'wb', string_of(t))
      return 0
    end
    local ahead = -behind
    if ahead > cap - 1 then
      for j = 1, cap / 8 do t[j] = 0 end
    else
      local tl = tonumber(st[2])
      for k = 1, ahead do
        local i = (tl + k) % cap
        local p = math.floor(i / 8) + 1
        t[p] = bit.band(t[p], bit.bnot(bit.lshift(1, i % 8)))
      end
    end
  else
    t = {}
    for j = 1, cap / 8 do t[j] = 0 end
  end
  local i = lo % cap
  local p = math.floor(i / 8) + 1
  t[p] = bit.bor(t[p], bit.lshift(1, i % 8))
  redis.call('HSET', key, 'wh', hi, 'wl', lo, 'wb', string_of(t))
  return 0
end
`;

/** The part of ioredis a script needs (kept narrow so that tests can count calls). */
export interface ScriptClient {
  evalsha(sha: string, numKeys: number, ...args: Array<string | number | Buffer>): Promise<unknown>;
  eval(script: string, numKeys: number, ...args: Array<string | number | Buffer>): Promise<unknown>;
}

/** A Lua script run by SHA-1, with the source sent only when Redis does not know it. */
export class RedisScript {
  readonly sha: string;

  constructor(readonly source: string) {
    this.sha = createHash('sha1').update(source).digest('hex');
  }

  async run(client: ScriptClient, keys: readonly string[], args: ReadonlyArray<string | number | Buffer>): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (e) {
      // NOSCRIPT: first use on this server, or Redis restarted; EVAL caches it again.
      if (!(e instanceof Error) || !e.message.startsWith('NOSCRIPT')) throw e;
      return client.eval(this.source, keys.length, ...keys, ...args);
    }
  }
}

/** KEYS[1] session hash; ARGV hi, lo, size. Returns the verdict of {@link WINDOW_LUA} (for tests and tools). */
export const WINDOW_SCRIPT = new RedisScript(
  `${WINDOW_LUA}\nreturn window_mark(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))\n`,
);

/**
 * Creates a session unless the id exists. KEYS[1] session hash; ARGV: record
 * (`st`, immutable), next send number, sent units, failed units, window size,
 * window top hi and lo ('' when nothing was received yet), window ring bytes,
 * TTL in ms. Returns 1 when created, 0 when the id was taken.
 */
export const CREATE_SCRIPT = new RedisScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'st', ARGV[1], 'ns', ARGV[2], 'su', ARGV[3], 'fu', ARGV[4], 'ws', ARGV[5], 'wb', ARGV[8])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'wh', ARGV[6], 'wl', ARGV[7]) end
redis.call('PEXPIRE', KEYS[1], ARGV[9])
return 1
`);

/**
 * The one call per protected request. KEYS[1] session hash; ARGV: received
 * number as hi, lo; TTL in ms. Returns {-1} when the session is missing;
 * {1 or 2, -1, sent units, failed units} for replayed or too old (nothing
 * changed); {0, reserved send number, sent units, failed units} when fresh:
 * the number is recorded in the window, the send number taken (HINCRBY: never
 * handed out twice), one confidentiality unit charged and the TTL refreshed.
 */
export const COMMIT_SCRIPT = new RedisScript(`${WINDOW_LUA}
local size = tonumber(redis.call('HGET', KEYS[1], 'ws'))
if not size then return {-1} end
local v = window_mark(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), size)
if type(v) == 'table' then return v end
if v ~= 0 then
  local c = redis.call('HMGET', KEYS[1], 'su', 'fu')
  return {v, -1, tonumber(c[1]), tonumber(c[2])}
end
local send = redis.call('HINCRBY', KEYS[1], 'ns', 1) - 1
local su = redis.call('HINCRBY', KEYS[1], 'su', 1)
local fu = tonumber(redis.call('HGET', KEYS[1], 'fu'))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {0, send, su, fu}
`);

/** Adds usage. KEYS[1] session hash; ARGV sent units, failed units. Returns {sent, failed}, or nil when missing. */
export const CHARGE_SCRIPT = new RedisScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local su = redis.call('HINCRBY', KEYS[1], 'su', ARGV[1])
local fu = redis.call('HINCRBY', KEYS[1], 'fu', ARGV[2])
return {su, fu}
`);

/**
 * Reserves send numbers for the chunks of a streamed answer. KEYS[1] session
 * hash; ARGV count, TTL in ms. Returns {first reserved number, sent units,
 * failed units} (HINCRBY: the numbers first .. first + count - 1 are never
 * handed out again; count units charged; TTL refreshed), or nil when missing.
 */
export const RESERVE_SCRIPT = new RedisScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local first = redis.call('HINCRBY', KEYS[1], 'ns', ARGV[1]) - tonumber(ARGV[1])
local su = redis.call('HINCRBY', KEYS[1], 'su', ARGV[1])
local fu = tonumber(redis.call('HGET', KEYS[1], 'fu'))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {first, su, fu}
`);
