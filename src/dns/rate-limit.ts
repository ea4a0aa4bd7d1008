/** What to do with one UDP answer to a rate-limited asker. */
export type RateVerdict = 'send' | 'slip' | 'drop';

export interface RateLimitOptions {
  /** Answers per second an asker gets once its burst is spent. */
  perSecond: number;
  burst: number;
  /** Askers tracked at once; the oldest is forgotten for a new one, so spoofed sources cost bounded memory. */
  maxAskers: number;
  now?: () => number;
}

interface Bucket {
  tokens: number;
  at: number;
  over: number;
}

/**
 * Per-asker response rate limiting of UDP answers (the idea of BIND's RRL):
 * a token bucket per source address. Over the limit, every second answer
 * "slips" out as an empty truncated reply, so a real client asks again over
 * TCP (which cannot be spoofed) and a spoofed victim gets a few small
 * packets instead of an amplified stream; the others are dropped.
 */
export class ResponseRateLimit {
  private readonly buckets = new Map<string, Bucket>();
  private readonly now: () => number;

  constructor(private readonly options: RateLimitOptions) {
    this.now = options.now ?? Date.now;
  }

  verdict(asker: string): RateVerdict {
    const now = this.now();
    let bucket = this.buckets.get(asker);
    if (bucket === undefined) {
      if (this.buckets.size >= this.options.maxAskers) this.buckets.delete(this.buckets.keys().next().value!);
      bucket = { tokens: this.options.burst, at: now, over: 0 };
      this.buckets.set(asker, bucket);
    } else {
      bucket.tokens = Math.min(this.options.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.options.perSecond);
      bucket.at = now;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 'send';
    }
    return ++bucket.over % 2 === 0 ? 'slip' : 'drop';
  }

  /** Askers tracked now. */
  get size(): number {
    return this.buckets.size;
  }
}
