//! The static side of the synthetic day: instruments, owners, accounts, desks, traders, and
//! which participants trade which instruments.

use std::collections::BTreeSet;

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// How an account behaves in the simulation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Quotes both sides of its instruments and re-quotes as the fair value moves.
    MarketMaker,
    /// Small, fast orders; mostly immediate-or-cancel takers.
    Hft,
    /// Larger passive orders, some marketable.
    Institutional,
    /// Small orders, mostly marketable limits.
    Retail,
    /// The injected order-to-trade-ratio breach: a message storm on one instrument.
    Storm,
    /// A member of staff with a personal account: trades only when front running a client.
    Employee,
}

pub(crate) struct Instrument {
    pub(crate) symbol: String,
    pub(crate) isin: String,
    /// Opening reference price, in cents.
    pub(crate) start_ticks: i64,
    /// Share of the day's activity (unnormalised).
    pub(crate) weight: f64,
    /// Daily volatility of the fair-value random walk (log terms).
    pub(crate) sigma: f64,
}

pub(crate) struct Account {
    pub(crate) name: String,
    pub(crate) owner: u32,
    pub(crate) desk: &'static str,
    pub(crate) trader: String,
    pub(crate) role: Role,
}

/// Who trades an instrument, by role (account indexes).
#[derive(Default)]
pub(crate) struct Coverage {
    pub(crate) mm: Vec<u32>,
    pub(crate) hft: Vec<u32>,
    pub(crate) inst: Vec<u32>,
    pub(crate) retail: Vec<u32>,
}

pub(crate) struct Universe {
    pub(crate) instruments: Vec<Instrument>,
    pub(crate) accounts: Vec<Account>,
    pub(crate) owners: Vec<String>,
    pub(crate) coverage: Vec<Coverage>,
    /// Storm accounts, in account-index order.
    pub(crate) storm_accounts: Vec<u32>,
    /// Owners with more than one (non-storm) account, with their accounts.
    pub(crate) multi_owners: Vec<Vec<u32>>,
    /// Employees' personal accounts, after the others.
    pub(crate) employees: Vec<u32>,
}

/// Employees' personal accounts, on top of the accounts asked for.
pub(crate) const EMPLOYEES: usize = 2;

const MM_DESKS: &[&str] = &["MM-EQ1", "MM-EQ2"];
const HFT_DESKS: &[&str] = &["PROP-HFT", "PROP-ALGO"];
const STORM_DESKS: &[&str] = &["PROP-ALGO"];
const INST_DESKS: &[&str] = &["INST-CASH", "INST-PT", "INST-LO"];
const RETAIL_DESKS: &[&str] = &["RETAIL-DMA", "RETAIL-FLOW"];
const STAFF_DESKS: &[&str] = &["STAFF"];
const ALL_DESKS: &[&str] =
    &["MM-EQ1", "MM-EQ2", "PROP-HFT", "PROP-ALGO", "INST-CASH", "INST-PT", "INST-LO", "RETAIL-DMA", "RETAIL-FLOW"];
const TRADERS_PER_DESK: usize = 4;

fn desks(role: Role) -> &'static [&'static str] {
    match role {
        Role::MarketMaker => MM_DESKS,
        Role::Hft => HFT_DESKS,
        Role::Storm => STORM_DESKS,
        Role::Institutional => INST_DESKS,
        Role::Retail => RETAIL_DESKS,
        Role::Employee => STAFF_DESKS,
    }
}

/// ISIN check digit (ISO 6166): letters become two digits, then Luhn from the right.
fn isin_check(body: &str) -> char {
    let mut digits = Vec::with_capacity(24);
    for c in body.chars() {
        match c.to_digit(36) {
            Some(v) if v >= 10 => {
                digits.push(v / 10);
                digits.push(v % 10);
            }
            Some(v) => digits.push(v),
            None => {}
        }
    }
    let mut sum = 0;
    for (k, d) in digits.iter().rev().enumerate() {
        let v = if k % 2 == 0 { d * 2 } else { *d };
        sum += v / 10 + v % 10;
    }
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

fn weighted_pick(rng: &mut ChaCha8Rng, cum: &[f64]) -> usize {
    let total = cum.last().copied().unwrap_or(0.0);
    let x = rng.random::<f64>() * total;
    cum.partition_point(|&c| c <= x).min(cum.len().saturating_sub(1))
}

/// Builds the universe. `instruments >= 4` and `accounts >= 30` are checked by the caller.
pub(crate) fn build(instruments: usize, accounts: usize, storm_pairs: usize, rng: &mut ChaCha8Rng) -> Universe {
    // Instruments: two cheap (room for 150k+ share orders under the notional limit), two
    // expensive (room for >5M notional under 50k shares), the rest log-uniform in 10..500.
    let mut used = BTreeSet::new();
    let mut ranks: Vec<usize> = (0..instruments).collect();
    ranks.shuffle(rng);
    let mut insts = Vec::with_capacity(instruments);
    for (k, &rank) in ranks.iter().enumerate() {
        let symbol = loop {
            let len = if rng.random_bool(0.6) { 4 } else { 3 };
            let s: String = (0..len).map(|_| char::from(b'A' + rng.random_range(0..26u8))).collect();
            if used.insert(s.clone()) {
                break s;
            }
        };
        let price: f64 = match k {
            0 | 1 => rng.random_range(10.0..22.0),
            2 | 3 => rng.random_range(250.0..480.0),
            _ => (rng.random_range(10f64.ln()..500f64.ln())).exp(),
        };
        let body = format!("XS{:09}", 100_000 + k);
        let isin = format!("{body}{}", isin_check(&body));
        insts.push(Instrument {
            symbol,
            isin,
            start_ticks: (price * 100.0).round() as i64,
            weight: 1.0 / ((rank + 1) as f64).powf(1.1),
            sigma: rng.random_range(0.008..0.025),
        });
    }

    // Accounts by role, grouped into owners: ~10% of owners hold 2-3 accounts.
    let n_storm = storm_pairs;
    let n_mm = (accounts * 3 / 100).max(3);
    let n_hft = (accounts * 5 / 100).max(2);
    let n_inst = (accounts * 30 / 100).max(4);
    let n_retail = accounts - n_storm - n_mm - n_hft - n_inst;
    let mut owners: Vec<(Role, usize)> = Vec::new();
    for (role, count) in [
        (Role::Storm, n_storm),
        (Role::MarketMaker, n_mm),
        (Role::Hft, n_hft),
        (Role::Institutional, n_inst),
        (Role::Retail, n_retail),
    ] {
        let mut left = count;
        let mut first = true;
        while left > 0 {
            let k = if role == Role::Storm {
                1
            } else if first && matches!(role, Role::Institutional | Role::Retail) {
                2
            } else if rng.random_bool(0.1) {
                rng.random_range(2..=3)
            } else {
                1
            };
            let k = k.min(left);
            owners.push((role, k));
            left -= k;
            first = false;
        }
    }
    owners.shuffle(rng);

    // Traders: a few per desk, numbered across desks.
    let trader_name = |desk: &str, k: usize| {
        let d = ALL_DESKS.iter().position(|x| *x == desk).unwrap_or(0);
        format!("T{:03}", d * TRADERS_PER_DESK + k + 1)
    };
    let mut owner_names = Vec::with_capacity(owners.len());
    let mut pending: Vec<(u32, Role, &'static str, String)> = Vec::with_capacity(accounts);
    for (o, &(role, k)) in owners.iter().enumerate() {
        owner_names.push(format!("OWN{:04}", o + 1));
        let ds = desks(role);
        let desk = ds[rng.random_range(0..ds.len())];
        let trader = trader_name(desk, rng.random_range(0..TRADERS_PER_DESK));
        for _ in 0..k {
            pending.push((o as u32, role, desk, trader.clone()));
        }
    }
    pending.shuffle(rng);
    let accts: Vec<Account> = pending
        .into_iter()
        .enumerate()
        .map(|(a, (owner, role, desk, trader))| Account { name: format!("ACC{:04}", a + 1), owner, desk, trader, role })
        .collect();

    let mut by_owner: Vec<Vec<u32>> = vec![Vec::new(); owner_names.len()];
    for (a, acct) in accts.iter().enumerate() {
        by_owner[acct.owner as usize].push(a as u32);
    }
    let multi_owners: Vec<Vec<u32>> = by_owner
        .into_iter()
        .filter(|v| v.len() > 1 && v.iter().all(|&a| accts[a as usize].role != Role::MarketMaker))
        .collect();
    let storm_accounts: Vec<u32> = (0..accts.len() as u32).filter(|&a| accts[a as usize].role == Role::Storm).collect();

    // Coverage: who trades what. Busy instruments draw more participants.
    let mut cum = Vec::with_capacity(instruments);
    let mut acc = 0.0;
    for i in &insts {
        acc += i.weight;
        cum.push(acc);
    }
    let mut coverage: Vec<Coverage> = (0..instruments).map(|_| Coverage::default()).collect();
    for (a, acct) in accts.iter().enumerate() {
        let a = a as u32;
        match acct.role {
            Role::Storm | Role::Employee => {}
            Role::MarketMaker => {
                for c in coverage.iter_mut() {
                    if rng.random_bool(0.6) {
                        c.mm.push(a);
                    }
                }
            }
            Role::Hft => {
                for c in coverage.iter_mut() {
                    if rng.random_bool(0.6) {
                        c.hft.push(a);
                    }
                }
            }
            Role::Institutional | Role::Retail => {
                let want =
                    if acct.role == Role::Institutional { rng.random_range(2..=8) } else { rng.random_range(1..=4) };
                let want = want.min(instruments);
                let mut chosen = BTreeSet::new();
                let mut tries = 0;
                while chosen.len() < want && tries < 100 {
                    chosen.insert(weighted_pick(rng, &cum));
                    tries += 1;
                }
                for i in chosen {
                    if acct.role == Role::Institutional {
                        coverage[i].inst.push(a);
                    } else {
                        coverage[i].retail.push(a);
                    }
                }
            }
        }
    }
    let of_role =
        |role: Role| -> Vec<u32> { (0..accts.len() as u32).filter(|&a| accts[a as usize].role == role).collect() };
    let (mms, hfts, inst_all, retail_all) =
        (of_role(Role::MarketMaker), of_role(Role::Hft), of_role(Role::Institutional), of_role(Role::Retail));
    for c in coverage.iter_mut() {
        // At least two market makers per book (so books are two-sided), at most four.
        while c.mm.len() < 2.min(mms.len()) {
            let a = mms[rng.random_range(0..mms.len())];
            if !c.mm.contains(&a) {
                c.mm.push(a);
            }
        }
        c.mm.shuffle(rng);
        c.mm.truncate(4);
        c.mm.sort_unstable();
        for (list, all) in [(&mut c.hft, &hfts), (&mut c.inst, &inst_all), (&mut c.retail, &retail_all)] {
            if list.is_empty() {
                list.push(all[rng.random_range(0..all.len())]);
            }
        }
    }

    // Employees last, with no random draw, so that the rest of the universe is as it would be
    // without them; each its own owner.
    let mut accts = accts;
    let mut employees = Vec::with_capacity(EMPLOYEES);
    for k in 0..EMPLOYEES {
        owner_names.push(format!("OWNEMP{:02}", k + 1));
        employees.push(accts.len() as u32);
        accts.push(Account {
            name: format!("EMP{:02}", k + 1),
            owner: (owner_names.len() - 1) as u32,
            desk: STAFF_DESKS[0],
            trader: format!("TEMP{:02}", k + 1),
            role: Role::Employee,
        });
    }
    Universe {
        instruments: insts,
        accounts: accts,
        owners: owner_names,
        coverage,
        storm_accounts,
        multi_owners,
        employees,
    }
}

#[cfg(test)]
mod tests {
    use super::isin_check;

    #[test]
    fn isin_check_digit() {
        // Real ISINs: Apple, BAE Systems.
        assert_eq!(isin_check("US037833100"), '5');
        assert_eq!(isin_check("GB000263494"), '6');
    }
}
