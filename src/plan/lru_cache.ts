/**
 * A small least-recently-used map: the one cache behind the block schedules (src/plan/schedule.ts) and the
 * backends' uploaded schedule tables, so eviction and refresh are written once. `onEvict` releases what an entry
 * owns (a GPU buffer, say) when it falls out of the cache or on clear().
 */
export class LruCache<K, V> {
  private readonly entries = new Map<K, V>();

  constructor(private readonly capacity: number, private readonly onEvict?: (value: V, key: K) => void) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new Error(`LruCache capacity must be >= 1, got ${capacity}`);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The cached value for `key`, made by `create` on a miss; either way it becomes the most recently used. */
  getOrCreate(key: K, create: () => V): V {
    let value = this.entries.get(key);
    if (value !== undefined || this.entries.has(key)) {
      this.entries.delete(key);  // re-inserted below: Map keeps insertion order, so this refreshes its position
    } else {
      value = create();
      if (this.entries.size >= this.capacity) {
        const oldest = this.entries.keys().next().value as K;
        const evicted = this.entries.get(oldest) as V;
        this.entries.delete(oldest);
        this.onEvict?.(evicted, oldest);
      }
    }
    this.entries.set(key, value as V);
    return value as V;
  }

  clear(): void {
    const all = [...this.entries];
    this.entries.clear();
    if (this.onEvict != null) for (const [key, value] of all) this.onEvict(value, key);
  }
}
