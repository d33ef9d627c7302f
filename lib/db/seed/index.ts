/** The seed: the coin catalogue, the deterministic price series, its binary COPY form, the loader. */
export { SAMPLE_CRYPTOCURRENCIES, type SampleCryptocurrency } from "./coins.js";
export { CANDLE_MS, SERIES_START, candles, type Candle } from "./series.js";
export { COPY_BINARY_HEADER, COPY_BINARY_TRAILER, SEED_DATA_SOURCE, copyChunks } from "./copy-binary.js";
export * from "./load.js";
