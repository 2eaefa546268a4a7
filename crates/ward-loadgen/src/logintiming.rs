//! Whether sign-in answers reveal which login names exist: the same failed sign-in is tried
//! with a name that does not exist, a name that cannot exist (malformed) and an existing name
//! with a wrong password, interleaved, one at a time, against a server in this process. Each
//! case's answers must be byte-identical (status and body), and the latencies are compared: a
//! table of percentiles and a Mann-Whitney U test, which needs no assumption about the shape
//! of the distributions. A figure, not a pass mark: the run fails only on differing answers.

use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::json;

use crate::client::Endpoint;
use crate::provision::provision;

/// The cases, in the order they are interleaved.
const CASES: [&str; 3] = ["unknown name", "malformed name", "existing name, wrong password"];

pub(crate) struct TimingArgs {
    pub(crate) attempts: usize,
    pub(crate) database_url: Option<String>,
}

/// Runs `attempts` sign-ins per case and prints the table.
pub(crate) async fn run(args: &TimingArgs, tag: &str) -> anyhow::Result<()> {
    let temp = std::env::temp_dir().join(format!("ward-loadgen-{tag}"));
    let mut config = ward_server::Config {
        data_dir: temp.clone(),
        listen: "127.0.0.1:0".parse()?,
        database_url: args.database_url.clone(),
        ..ward_server::Config::default()
    };
    // Every attempt comes from 127.0.0.1: lift the per-address limit, or it would answer
    // most of them before any lookup (which would hide the very difference measured).
    config.sessions.failed_logins_per_minute_per_address = 100_000;
    let store = ward_server::open_store(&config).await?;
    let running = ward_server::start(config, store.clone()).await?;
    let ep = Endpoint::new(&running.url, std::fs::read(&running.cert_path)?, false)?;
    // At most four wrong passwords per existing account, below the lockout's free attempts,
    // so no answer is a lockout.
    let accounts = args.attempts.div_ceil(4).max(1);
    let people = provision(&store, tag, accounts).await?;
    let http = ep.http()?;
    let mut samples: [Vec<f64>; 3] = Default::default();
    let mut answers: [Option<(u16, String)>; 3] = Default::default();
    eprintln!("{} sign-ins per case, interleaved, one at a time", args.attempts);
    // One warm-up round: connection set-up and first-use costs are not part of the figure.
    for i in 0..=args.attempts {
        for (case, name) in CASES.iter().enumerate() {
            let login = match case {
                0 => format!("nobody{i}@{tag}.example"),
                1 => "x".to_owned(),
                _ => people.accounts[i % accounts].login.clone(),
            };
            let body = json!({"login": login, "password": format!("wrong-{i}"), "device": {"name": "timing", "platform": "cli"}});
            let started = Instant::now();
            let res = http.post(format!("{}/api/v1/auth/login", ep.url)).json(&body).send().await?;
            let status = res.status().as_u16();
            let text = res.text().await?;
            let took = started.elapsed();
            if i == 0 {
                continue;
            }
            samples[case].push(took.as_secs_f64() * 1000.0);
            match &answers[case] {
                None => answers[case] = Some((status, text)),
                Some(first) if *first != (status, text.clone()) => {
                    bail!("{name}: answers differ within the case: {first:?} then {status} {text}")
                }
                Some(_) => {}
            }
        }
    }
    drop(running);
    let _ = std::fs::remove_dir_all(&temp);

    let first = answers[0].clone().context("no answers")?;
    for (case, a) in answers.iter().enumerate() {
        if a.as_ref() != Some(&first) {
            bail!("the answers differ: '{}' got {:?}, '{}' got {:?}", CASES[0], first, CASES[case], a);
        }
    }
    println!(
        "\nSign-in failures, {} attempts per case ({}), answer for every case: {} {}\n",
        args.attempts,
        backend(args),
        first.0,
        first.1
    );
    println!("| case | p10 ms | median ms | p90 ms | mean ms |");
    println!("|---|---:|---:|---:|---:|");
    for (case, s) in samples.iter_mut().enumerate() {
        s.sort_by(f64::total_cmp);
        let mean = s.iter().sum::<f64>() / s.len() as f64;
        println!("| {} | {:.1} | {:.1} | {:.1} | {:.1} |", CASES[case], pct(s, 0.1), pct(s, 0.5), pct(s, 0.9), mean);
    }
    println!("\n| compared with '{}' | median difference ms | Mann-Whitney z |", CASES[2]);
    println!("|---|---:|---:|");
    for case in 0..2 {
        let z = mann_whitney_z(&samples[case], &samples[2]);
        println!("| {} | {:+.2} | {:+.2} |", CASES[case], pct(&samples[case], 0.5) - pct(&samples[2], 0.5), z);
    }
    println!("\n|z| below about 2 means the timings do not tell the cases apart at this sample size.");
    Ok(())
}

fn backend(args: &TimingArgs) -> &'static str {
    if args.database_url.is_some() { "PostgreSQL" } else { "SQLite" }
}

/// The `q` quantile of sorted samples (nearest rank).
fn pct(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// The normal approximation of the Mann-Whitney U statistic of `a` against `b`, with ties
/// given their average rank.
fn mann_whitney_z(a: &[f64], b: &[f64]) -> f64 {
    let mut all: Vec<(f64, bool)> = a.iter().map(|&x| (x, true)).chain(b.iter().map(|&x| (x, false))).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut rank_sum_a = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_a += all[i..=j].iter().filter(|(_, in_a)| *in_a).count() as f64 * rank;
        i = j + 1;
    }
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    let u = rank_sum_a - n1 * (n1 + 1.0) / 2.0;
    (u - n1 * n2 / 2.0) / (n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mann_whitney_separates_shifted_samples_and_not_equal_ones() {
        let a: Vec<f64> = (0..50).map(f64::from).collect();
        assert!(mann_whitney_z(&a, &a).abs() < 1e-9);
        let b: Vec<f64> = (0..50).map(|x| f64::from(x) + 100.0).collect();
        assert!(mann_whitney_z(&a, &b) < -8.0, "{}", mann_whitney_z(&a, &b));
        assert!(mann_whitney_z(&b, &a) > 8.0);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let s = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!((pct(&s, 0.1), pct(&s, 0.5), pct(&s, 0.9)), (1.0, 5.0, 9.0));
    }
}
