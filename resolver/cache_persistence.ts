/**
 * The cache's life across processes (SmartDNS's `cache-persist`): restoring the saved file before
 * serving, the periodic checkpoint, and the hand-over file of a planned restart. Every failure is
 * logged and costs only the cache, never the service.
 *
 * @module
 */
import type { CacheConfig } from "../config/schema.ts";
import type { Logger } from "../ops/log.ts";
import type { AnswerCache } from "./answer_cache.ts";
import { loadCache, saveCache } from "./cache_file.ts";

/** Loads the saved cache file into `cache`; an unusable file is logged and set aside. */
export async function restoreSavedCache(cache: AnswerCache, config: CacheConfig, log: Logger): Promise<void> {
  try {
    const { loaded, expired } = await loadCache(cache, config.file);
    log.info("cache: {loaded} entries loaded from {file} ({expired} had expired)", {
      loaded,
      expired,
      file: config.file,
    });
  } catch (e) {
    log.warn("{message}; starting with an empty cache", { message: (e as Error).message });
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

/** Saves `cache` to its file; a failure (disk full …) leaves the previous file and is logged. */
export async function checkpointCache(cache: AnswerCache, config: CacheConfig, log: Logger): Promise<void> {
  try {
    const dir = config.file.slice(0, config.file.lastIndexOf("/"));
    if (dir) await Deno.mkdir(dir, { recursive: true });
    const saved = await saveCache(cache, config.file);
    log.debug("cache: {saved} entries saved to {file}", { saved, file: config.file });
  } catch (e) {
    log.warn("cache: saving to {file} failed, the previous file stays: {error}", {
      file: config.file,
      error: (e as Error).message,
    });
  }
}
