/**
 * The deterministic price series: a pure function of (symbol, minute), so candle i of BTC is the
 * same on every run and every machine (integer PRNG, plain IEEE arithmetic, prices as whole ticks).
 */
import type { SampleCryptocurrency } from "./coins.js";

/** First candle of every series (the guide's example timestamp). */
export const SERIES_START = Date.UTC(2024, 0, 1, 0, 0, 0);
/** The series' interval. */
export const CANDLE_MS = 60_000;

/** mulberry32: a tiny integer PRNG, identical on every platform. Returns [0, 1). */
export function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a of the symbol: each coin has its own stream. */
export function symbolSeed(symbol: string): number {
  let h = 2166136261;
  for (let i = 0; i < symbol.length; i++) h = Math.imul(h ^ symbol.charCodeAt(i), 16777619);
  return h >>> 0;
}

/**
 * One candle in whole units: prices in ticks of 10^-priceDecimals, volume and market cap in
 * cents. Integers keep the constraints exact: high ≥ open, close ≥ low ≥ 0 hold after rounding.
 */
export interface Candle {
  /** Minutes since SERIES_START. */
  minute: number;
  open: number;
  high: number;
  low: number;
  close: number;
  volumeCents: number;
  marketCapCents: number;
}

/**
 * The walk of one coin, minute by minute from SERIES_START: a random walk of up to ±0.1 % a
 * minute, pulled back to the base price over months (so long series stay plausible), with high and
 * low a little beyond open and close. `next()` moves to the next minute in place (no allocation:
 * the COPY writer calls it a million times); `candles()` is the same walk as objects.
 */
export class Walk implements Candle {
  minute = -1;
  open = 0;
  high = 0;
  low = 0;
  close: number;
  volumeCents = 0;
  marketCapCents = 0;
  private readonly random: () => number;
  private readonly tick: number;
  private readonly meanVolumeCents: number;
  private price: number;

  constructor(private readonly coin: SampleCryptocurrency) {
    this.random = prng(symbolSeed(coin.symbol));
    this.tick = 10 ** coin.priceDecimals;
    this.meanVolumeCents = (coin.dailyVolume / 1440) * 100;
    this.price = coin.basePrice;
    this.close = Math.round(this.price * this.tick);
  }

  next(): void {
    const { coin, random, tick } = this;
    const volatility = 0.001;
    this.minute++;
    this.open = this.close;
    this.price *= 1 + volatility * (2 * random() - 1) + (2e-6 * (coin.basePrice - this.price)) / coin.basePrice;
    this.close = Math.round(this.price * tick);
    this.high = Math.round(Math.max(this.open, this.close) * (1 + volatility * random()));
    this.low = Math.round(Math.min(this.open, this.close) * (1 - volatility * random()));
    this.volumeCents = Math.round(this.meanVolumeCents * (0.5 + random()));
    this.marketCapCents = Math.round((this.close * coin.supply * 100) / tick);
  }
}

/** The first `count` candles of one coin. Deterministic: the same coin and count give the same candles. */
export function* candles(coin: SampleCryptocurrency, count: number): Generator<Candle> {
  const walk = new Walk(coin);
  for (let i = 0; i < count; i++) {
    walk.next();
    const { minute, open, high, low, close, volumeCents, marketCapCents } = walk;
    yield { minute, open, high, low, close, volumeCents, marketCapCents };
  }
}
