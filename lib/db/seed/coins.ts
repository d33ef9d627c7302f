/**
 * The seed's coin catalogue: the guide's BTC and ETH first, then well-known coins, with what the
 * price series needs of each (base price, tick size, supply, daily volume).
 */

/** A sample cryptocurrency: the guide's BTC first, then well-known coins. */
export interface SampleCryptocurrency {
  symbol: string;
  name: string;
  coinGeckoId: string;
  /** Where the synthetic series starts (USD, close to early-2024 prices). */
  basePrice: number;
  /** Decimals of its prices (about 6 significant digits; numeric(20,8) allows up to 8). */
  priceDecimals: number;
  /** Circulating supply, for market_cap = close × supply. */
  supply: number;
  /** Typical daily volume in USD, spread over the day's candles. */
  dailyVolume: number;
}

/** BTC and ETH are the guide's examples (crypto:BTC:price, crypto:ETH:metadata); the rest are well-known coins. */
export const SAMPLE_CRYPTOCURRENCIES: readonly SampleCryptocurrency[] = [
  { symbol: "BTC", name: "Bitcoin", coinGeckoId: "bitcoin", basePrice: 45000, priceDecimals: 2, supply: 19_600_000, dailyVolume: 25e9 },
  { symbol: "ETH", name: "Ethereum", coinGeckoId: "ethereum", basePrice: 2300, priceDecimals: 3, supply: 120_200_000, dailyVolume: 12e9 },
  { symbol: "SOL", name: "Solana", coinGeckoId: "solana", basePrice: 100, priceDecimals: 4, supply: 430_000_000, dailyVolume: 2.5e9 },
  { symbol: "BNB", name: "BNB", coinGeckoId: "binancecoin", basePrice: 310, priceDecimals: 4, supply: 150_000_000, dailyVolume: 1e9 },
  { symbol: "XRP", name: "XRP", coinGeckoId: "ripple", basePrice: 0.62, priceDecimals: 6, supply: 54_000_000_000, dailyVolume: 1.5e9 },
  { symbol: "ADA", name: "Cardano", coinGeckoId: "cardano", basePrice: 0.59, priceDecimals: 6, supply: 35_000_000_000, dailyVolume: 6e8 },
  { symbol: "DOGE", name: "Dogecoin", coinGeckoId: "dogecoin", basePrice: 0.09, priceDecimals: 7, supply: 142_000_000_000, dailyVolume: 8e8 },
  { symbol: "AVAX", name: "Avalanche", coinGeckoId: "avalanche-2", basePrice: 38, priceDecimals: 4, supply: 370_000_000, dailyVolume: 7e8 },
  { symbol: "DOT", name: "Polkadot", coinGeckoId: "polkadot", basePrice: 8.2, priceDecimals: 5, supply: 1_300_000_000, dailyVolume: 3e8 },
  { symbol: "LINK", name: "Chainlink", coinGeckoId: "chainlink", basePrice: 15, priceDecimals: 4, supply: 570_000_000, dailyVolume: 5e8 },
  { symbol: "LTC", name: "Litecoin", coinGeckoId: "litecoin", basePrice: 72, priceDecimals: 4, supply: 74_000_000, dailyVolume: 4e8 },
  { symbol: "TRX", name: "TRON", coinGeckoId: "tron", basePrice: 0.11, priceDecimals: 6, supply: 88_000_000_000, dailyVolume: 3e8 },
  { symbol: "MATIC", name: "Polygon", coinGeckoId: "matic-network", basePrice: 0.92, priceDecimals: 6, supply: 9_300_000_000, dailyVolume: 4e8 },
  { symbol: "BCH", name: "Bitcoin Cash", coinGeckoId: "bitcoin-cash", basePrice: 250, priceDecimals: 4, supply: 19_600_000, dailyVolume: 3e8 },
  { symbol: "XLM", name: "Stellar", coinGeckoId: "stellar", basePrice: 0.12, priceDecimals: 6, supply: 28_000_000_000, dailyVolume: 1e8 },
  { symbol: "ATOM", name: "Cosmos Hub", coinGeckoId: "cosmos", basePrice: 10, priceDecimals: 5, supply: 380_000_000, dailyVolume: 2e8 },
  { symbol: "UNI", name: "Uniswap", coinGeckoId: "uniswap", basePrice: 6.5, priceDecimals: 5, supply: 600_000_000, dailyVolume: 1.5e8 },
  { symbol: "ETC", name: "Ethereum Classic", coinGeckoId: "ethereum-classic", basePrice: 24, priceDecimals: 4, supply: 146_000_000, dailyVolume: 2e8 },
  { symbol: "FIL", name: "Filecoin", coinGeckoId: "filecoin", basePrice: 5.5, priceDecimals: 5, supply: 500_000_000, dailyVolume: 2e8 },
  { symbol: "NEAR", name: "NEAR Protocol", coinGeckoId: "near", basePrice: 3.5, priceDecimals: 5, supply: 1_000_000_000, dailyVolume: 2e8 },
];
