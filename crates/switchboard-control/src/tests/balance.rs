//! Balancing sessions across gateways: one replica decides (the owner of shard 0), asks a
//! loaded gateway on its node subject, leaves a window between asks, and the duty moves
//! with the shard when that replica goes.

use switchboard_bus::MemoryBroker;
use switchboard_wire::pb::{self, gateway_command::Action};

use super::*;
use crate::balance::{BalanceConfig, DECIDER_SHARD};

fn sheds(g: &FakeGateway) -> Vec<pb::ShedAction> {
    let actions = g.commands().into_iter().filter_map(|c| c.action);
    actions.filter_map(|a| if let Action::Shed(s) = a { Some(s) } else { None }).collect()
}

#[tokio::test]
async fn the_owner_of_shard_0_asks_the_loaded_gateway_once_per_window_and_the_duty_moves_with_the_shard() {
    let ms = Duration::from_millis;
    let broker = MemoryBroker::new();
    let balance =
        BalanceConfig { interval: ms(20), window: ms(400), settle: ms(100), warmup: ms(0), ..Default::default() };
    let configs = ["c1", "c2"].map(|id| ControlConfig { balance: balance.clone(), ..config(id) });
    let replicas = cluster_with(&broker, configs.to_vec()).await;
    let loaded = gateway(&broker, "g1").await;
    let empty = gateway(&broker, "g2").await;
    for i in 0..40 {
        loaded.connect_quietly(&format!("u{i}"), &[]);
    }
    eventually("the loaded gateway is asked to move sessions", || !sheds(&loaded).is_empty()).await;
    // Mean 20 and one gateway below it: 20 × 2 wanted, capped at a quarter of 40.
    assert_eq!(sheds(&loaded), [pb::ShedAction { sessions: 10, window_ms: 400 }]);
    assert!(sheds(&empty).is_empty(), "a gateway below the mean is never asked");
    // A window shorter than the decider's quiet time (window + settle, 500 ms): a second
    // replica deciding too would have asked in it.
    tokio::time::sleep(ms(250)).await;
    assert_eq!(sheds(&loaded).len(), 1, "one replica decides, once per window");

    let decider = replicas.iter().position(|r| r.owned_shards().contains(&DECIDER_SHARD)).unwrap();
    replicas[decider].stop().await;
    let other = &replicas[1 - decider];
    eventually("the other replica owns shard 0", || other.owned_shards().contains(&DECIDER_SHARD)).await;
    let before = sheds(&loaded).len();
    eventually("the new decider asks again after its own quiet time", || sheds(&loaded).len() > before).await;
}
