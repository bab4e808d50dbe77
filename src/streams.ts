/**
 * Reading a Web body stream into one buffer under a size cap, without
 * buffering what exceeds it: memory stays bounded whatever the sender does.
 * @module
 */
import { AtlsError, type ErrorSource } from './errors.js';
import { concatBytes } from './bytes.js';

/**
 * Reads `body` whole. More than `max` bytes -> TOO_LARGE (the stream is
 * cancelled). A stream that breaks mid-way -> TRUNCATED_FLIGHT when the
 * bytes come from the peer (`source` remote), INVALID_ARGUMENT when they are
 * our own caller's.
 *
 * @example
 * ```ts
 * const bytes = await readLimited(request.body, 1 << 20, 'remote');
 * ```
 */
export async function readLimited(
  body: ReadableStream<Uint8Array> | null,
  max: number,
  source: ErrorSource,
): Promise<Uint8Array> {
  if (!body) return new Uint8Array(0);
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.length;
      if (total > max) {
        await reader.cancel().catch(() => undefined);
        throw new AtlsError('TOO_LARGE', `body exceeds ${max} bytes`, { source });
      }
      chunks.push(value);
    }
  } catch (e) {
    if (e instanceof AtlsError) throw e;
    throw source === 'remote'
      ? new AtlsError('TRUNCATED_FLIGHT', `body could not be read: ${String(e)}`, { source, cause: e })
      : new AtlsError('INVALID_ARGUMENT', 'cannot read the body', { source, cause: e });
  } finally {
    reader.releaseLock();
  }
  return chunks.length === 1 ? chunks[0]! : concatBytes(chunks);
}
