use super::*;

fn load(gateway: &str, sessions: u32) -> GatewayLoad {
    GatewayLoad { gateway: gateway.into(), sessions, age: Duration::from_secs(3600), draining: false }
}

fn loads(sessions: &[u32]) -> Vec<GatewayLoad> {
    sessions.iter().enumerate().map(|(i, &s)| load(&format!("g{i}"), s)).collect()
}

fn asks(a: &[(&str, u32)]) -> Vec<Ask> {
    a.iter().map(|&(g, sessions)| Ask { gateway: g.into(), sessions }).collect()
}

/// A named case: the loads and what `decide` makes of them.
type Case = (&'static str, Vec<GatewayLoad>, Result<Vec<Ask>, Hold>);

#[test]
fn the_decision_asks_the_gateways_above_the_mean_and_holds_otherwise() {
    let c = BalanceConfig::default();
    let young = |mut l: Vec<GatewayLoad>| {
        l[2].age = Duration::from_secs(3);
        l
    };
    let draining = |mut l: Vec<GatewayLoad>| {
        l[0].draining = true;
        l
    };
    let cases: Vec<Case> = vec![
        ("one gateway", loads(&[500]), Err(Hold::TooFew)),
        ("equal", loads(&[100, 100, 100]), Err(Hold::Balanced)),
        ("within 10% of the mean", loads(&[109, 100, 91]), Err(Hold::Balanced)),
        ("over 10% but under the 10-session floor", loads(&[12, 4]), Err(Hold::Balanced)),
        ("a newcomer that is still warming up", young(loads(&[150, 150, 0])), Err(Hold::Warming)),
        ("a gateway draining", draining(loads(&[0, 300, 300])), Err(Hold::Draining)),
        // Mean 100; one below it, so each excess of 50 is tripled, then capped at 25%.
        ("an empty newcomer", loads(&[150, 150, 0]), Ok(asks(&[("g0", 37), ("g1", 37)]))),
        // Measured after a rolling restart: mean 200, the last restarted gateway empty.
        ("376 / 224 / 0", loads(&[376, 224, 0]), Ok(asks(&[("g0", 94), ("g1", 56)]))),
        // Only the low one is out of the band: the two above the mean share the move.
        ("one low gateway", loads(&[107, 108, 85]), Ok(asks(&[("g0", 21), ("g1", 24)]))),
        // Two below the mean: 2,000 excess times 4/2, capped at a quarter of 3,000.
        ("one big, three small", loads(&[3000, 500, 500, 0]), Ok(asks(&[("g0", 750)]))),
    ];
    for (name, loads, want) in cases {
        assert_eq!(decide(&loads, &c), want, "{name}");
    }
}

#[test]
fn a_round_never_asks_more_than_the_share_of_a_gateway() {
    for share in [1, 10, 25, 50, 100] {
        let c = BalanceConfig { max_share_percent: share, ..Default::default() };
        let got = decide(&loads(&[10_000, 0]), &c).unwrap();
        assert_eq!(got, asks(&[("g0", 100 * share)]), "{share}%");
    }
    let all = BalanceConfig { max_share_percent: 100, ..Default::default() };
    assert_eq!(decide(&loads(&[150, 150, 0]), &all).unwrap(), asks(&[("g0", 150), ("g1", 150)]));
}

#[test]
fn no_round_follows_within_a_window_of_the_last_or_of_becoming_the_decider() {
    let c = BalanceConfig::default();
    let quiet = c.window + c.settle;
    let t0 = Instant::now();
    let mut b = Balancer::new(c, t0);
    let unbalanced = loads(&[150, 150, 0]);
    assert_eq!(b.round(&unbalanced, t0), Err(Hold::Moving), "a new decider waits");
    assert_eq!(b.round(&unbalanced, t0 + quiet - Duration::from_millis(1)), Err(Hold::Moving));
    let t1 = t0 + quiet;
    assert!(b.round(&unbalanced, t1).is_ok(), "then it asks");
    assert_eq!(b.round(&unbalanced, t1 + Duration::from_secs(1)), Err(Hold::Moving), "not again at once");
    assert_eq!(b.round(&unbalanced, t1 + quiet - Duration::from_millis(1)), Err(Hold::Moving));
    assert_eq!(b.round(&loads(&[100, 100, 100]), t1 + quiet), Err(Hold::Balanced));
    // A round that asked nothing does not start a quiet time.
    assert!(b.round(&unbalanced, t1 + quiet).is_ok());
}

/// Plays rounds against an even load balancer: every closed session reconnects to the next
/// gateway in turn (`random`: to one picked at random). Returns the rounds until balanced
/// and the loads then.
fn converge(start: &[u32], c: &BalanceConfig, mut random: Option<fastrand::Rng>) -> (usize, Vec<u32>) {
    let mut l = loads(start);
    let mut next = 0;
    for round in 0..30 {
        let asks = match decide(&l, c) {
            Err(Hold::Balanced) => return (round, l.iter().map(|g| g.sessions).collect()),
            Err(hold) => panic!("{hold:?}"),
            Ok(asks) => asks,
        };
        let mean = l.iter().map(|g| g.sessions).sum::<u32>() / l.len() as u32;
        let mut moving = 0;
        for ask in asks {
            let g = l.iter_mut().find(|g| g.gateway == ask.gateway).unwrap();
            assert!(g.sessions > mean, "only a gateway above the mean is asked: {g:?}");
            g.sessions -= ask.sessions;
            moving += ask.sessions;
        }
        for _ in 0..moving {
            let i = match &mut random {
                Some(rng) => rng.usize(..l.len()),
                None => {
                    next = (next + 1) % l.len();
                    next
                }
            };
            l[i].sessions += 1;
        }
    }
    panic!("no balance after 30 rounds: {l:?}");
}

#[test]
fn an_even_load_balancer_converges_within_a_few_rounds_and_stays() {
    let c = BalanceConfig::default();
    let fast = BalanceConfig { max_share_percent: 50, ..Default::default() };
    for (start, config, rounds) in [
        (&[150, 150, 0][..], &c, 5),
        (&[376, 224, 0], &c, 5),
        (&[1000, 1000, 1000, 0], &c, 4),
        (&[5000, 5000, 0], &c, 5),
        (&[150, 150, 0], &fast, 3),
        (&[376, 224, 0], &fast, 3),
    ] {
        let (took, end) = converge(start, config, None);
        assert!(took <= rounds, "{start:?} at {}%: {took} rounds, {end:?}", config.max_share_percent);
        let mean = end.iter().sum::<u32>() as f64 / end.len() as f64;
        assert!(end.iter().all(|&s| (s as f64 - mean).abs() <= (mean * 0.1).max(10.0)), "{start:?}: {end:?}");
        assert_eq!(decide(&loads(&end), config), Err(Hold::Balanced), "no oscillation once balanced");
    }
    for seed in 0..20 {
        let (took, end) = converge(&[376, 224, 0], &c, Some(fastrand::Rng::with_seed(seed)));
        assert!(took <= 8, "random placement, seed {seed}: {took} rounds, {end:?}");
    }
}
