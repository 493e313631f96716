//! Accounts trading at the session's price extremes, on the IMC Prosperity trade files: the
//! streaming rule gives exactly what a batch computation over the whole file gives, on one and
//! two workers, and ranks the trader the competition planted at the extremes first.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{data, read_jsonl, run};
use serde_json::Value;
use surveil::config::{Config, InsiderLikeConfig};
use surveil::model::Symbol;
use surveil::rules::insider_like::{MAX_EVIDENCE, wilson_lower_bound};

const P2: &str = "imc_prosperity/p2_2024/trades_round_4_day_1_wn.csv";
const P3: &str = "imc_prosperity/p3_2025/trades_round_5_day_2.csv";

/// An account's executions in the batch answer.
#[derive(Default)]
struct Tally {
    at_extreme: u64,
    counted: u64,
    /// (timestamp, byte offset of the line) of each execution at the extreme.
    evidence: Vec<(u64, u64)>,
}

/// The batch answer: (account, executions at the extreme, executions counted, the byte offsets
/// of the first `MAX_EVIDENCE` executions at the extreme in time) for every account the default
/// parameters flag, best first. Prices compared as read (exact decimals).
fn batch(path: &Path, config: &InsiderLikeConfig) -> Vec<(String, u64, u64, Vec<u64>)> {
    let text = std::fs::read_to_string(path).expect("read");
    // (buyer, seller, symbol, price, timestamp, offset of the line)
    let mut trades: Vec<(String, String, String, f64, u64, u64)> = Vec::new();
    let mut offset = 0u64;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let at = offset;
        offset += line.len() as u64;
        let f: Vec<&str> = line.trim_end().split(';').collect();
        if index == 0 || f.len() < 7 || !f[6].trim().parse::<f64>().is_ok_and(|q| q > 0.0) {
            continue;
        }
        let price = f[5].trim().parse::<f64>().expect("price");
        let time = f[0].trim().parse::<u64>().expect("timestamp");
        trades.push((f[1].to_string(), f[2].to_string(), f[3].to_string(), price, time, at));
    }
    let mut range: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for (_, _, symbol, price, _, _) in &trades {
        let r = range.entry(symbol).or_insert((*price, *price));
        r.0 = r.0.min(*price);
        r.1 = r.1.max(*price);
    }
    let mut counts: BTreeMap<&str, Tally> = BTreeMap::new();
    for (buyer, seller, symbol, price, time, at) in &trades {
        let (low, high) = range[symbol.as_str()];
        if high <= low {
            continue;
        }
        let band = config.band * (high - low);
        for (account, favourable) in [(buyer, price - low <= band + 1e-9), (seller, high - price <= band + 1e-9)] {
            if account.is_empty() {
                continue;
            }
            let c = counts.entry(account).or_default();
            c.counted += 1;
            c.at_extreme += u64::from(favourable);
            if favourable {
                c.evidence.push((*time, *at));
            }
        }
    }
    let mut flagged: Vec<(String, u64, u64, Vec<u64>)> = counts
        .into_iter()
        .filter(|(_, t)| {
            t.counted >= config.min_trades
                && wilson_lower_bound(t.at_extreme, t.counted, config.confidence_z) >= config.min_lower_bound
        })
        .map(|(a, mut t)| {
            t.evidence.sort();
            let first = t.evidence.into_iter().take(MAX_EVIDENCE).map(|(_, at)| at).collect();
            (a.to_string(), t.at_extreme, t.counted, first)
        })
        .collect();
    // Best bound first; ties by the account's symbol, as the rule orders them.
    flagged.sort_by(|x, y| {
        let (bx, by) = (wilson_lower_bound(x.1, x.2, 1.96), wilson_lower_bound(y.1, y.2, 1.96));
        by.total_cmp(&bx).then(Symbol::of(x.0.as_bytes()).cmp(&Symbol::of(y.0.as_bytes())))
    });
    flagged
}

fn streamed(out: &Path) -> Vec<(String, u64, u64, u64, Vec<u64>)> {
    let alerts: Vec<Value> =
        read_jsonl(out, "alerts.jsonl").into_iter().filter(|a| a["rule"] == "insider_like").collect();
    let param = |a: &Value, name: &str| a["parameters"][name].clone();
    let mut seen: Vec<(String, u64, u64, u64, Vec<u64>)> = alerts
        .iter()
        .map(|a| {
            // Evidence: trades at the extreme, of this account.
            let account = a["account"].as_str().expect("account").to_string();
            let evidence = a["evidence"].as_array().expect("evidence");
            assert!(!evidence.is_empty(), "{a}");
            for e in evidence {
                assert!(e["buyer"] == account.as_str() || e["seller"] == account.as_str(), "{e}");
            }
            (
                account,
                param(a, "at_extremes").as_u64().expect("count"),
                param(a, "trades").as_u64().expect("count"),
                param(a, "rank").as_u64().expect("rank"),
                evidence.iter().map(|e| e["offset"].as_u64().expect("offset")).collect(),
            )
        })
        .collect();
    seen.sort_by_key(|s| s.3);
    seen
}

#[test]
fn trades_at_the_extremes_match_the_batch_answer_and_olivia_ranks_first() {
    // The default threshold, and a low one that flags two accounts on the Prosperity 3 file,
    // so that the ranking is tested too.
    for min_lower_bound in [0.25, 0.02] {
        let mut config = Config::default();
        config.rules.insider_like.min_lower_bound = min_lower_bound;
        for file in [P2, P3] {
            let expected = batch(&data(file), &config.rules.insider_like);
            for workers in [1, 2] {
                let (_, out) = run(&[data(file)], config.clone(), workers);
                let seen = streamed(out.path());
                let seen_plain: Vec<(String, u64, u64, Vec<u64>)> =
                    seen.iter().map(|s| (s.0.clone(), s.1, s.2, s.4.clone())).collect();
                assert_eq!(seen_plain, expected, "{file}, {workers} workers, {min_lower_bound}");
                let ranks: Vec<u64> = seen.iter().map(|s| s.3).collect();
                assert_eq!(ranks, (1..=seen.len() as u64).collect::<Vec<_>>());
            }
            if file == P3 {
                assert_eq!(expected.first().map(|e| e.0.as_str()), Some("Olivia"), "{expected:?}");
            }
            if file == P3 && min_lower_bound < 0.1 {
                assert!(expected.len() >= 2, "{file}: {expected:?}");
            }
        }
    }
}
