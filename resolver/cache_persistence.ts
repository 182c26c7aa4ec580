/**
 * The cache's life across processes (SmartDNS's `cache-persist`): the journaled cache file, opened
 * before serving, and the hand-over file of a planned restart. Every failure is
 * logged and costs only the cache, never the service.
 *
 * @module
 */
import type { CacheConfig } from "../config/schema.ts";
import type { Logger } from "../ops/log.ts";
import type { AnswerCache } from "./answer_cache.ts";
import { loadCache, saveCache } from "./cache_file.ts";
import { CacheJournal } from "./cache_journal.ts";

/**
 * Loads the saved cache (snapshot and journal) into `cache` and journals it from now on; an
 * unusable file is logged and set aside, and a journal that cannot be opened costs only
 * persistence.
 */
export async function openCacheJournal(
  cache: AnswerCache,
  config: CacheConfig,
  log: Logger,
): Promise<CacheJournal | undefined> {
  try {
    return await CacheJournal.open(cache, {
      file: config.file,
      checkpointTime: config.checkpointTime,
      writeBudget: config.writeBudget,
    }, log);
  } catch (e) {
    log.warn("cache: {message}; the cache is not saved", { message: (e as Error).message });
    return undefined;
  }
}

/** Loads the cache a predecessor wrote to `file` in a planned restart, then deletes the file. */
export async function takeOverHandedCache(cache: AnswerCache, file: string, log: Logger): Promise<void> {
  try {
    const { loaded } = await loadCache(cache, file);
    log.info("cache: {loaded} entries taken over from the previous child", { loaded });
  } catch (e) {
    log.warn("{message}; the hand-over is skipped", { message: (e as Error).message });
  } finally {
    await Deno.remove(file).catch(() => {});
  }
}

/** Writes `cache` (none: nothing) to the hand-over file; returns the entries written, or -1. */
export async function handOverTo(cache: AnswerCache | undefined, file: string, log: Logger): Promise<number> {
  if (!cache) return 0;
  try {
    return await saveCache(cache, file);
  } catch (e) {
    log.warn("cache hand-over to {file} failed: {error}", { file, error: (e as Error).message });
    return -1;
  }
}
