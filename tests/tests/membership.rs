//! Foundation end to end: real jobmanager and taskmanager processes register, are lost at once
//! when killed, time out when silent, re-register with a restarted jobmanager, and deregister
//! cleanly on SIGTERM.

use std::time::Duration;

use sluice_tests::{get_text, wait_for, Cluster};

#[test]
fn register_kill_restart_and_deregister() {
    // heartbeat.timeout stays at its default (50 s): loss must come from the broken stream.
    let mut cluster = Cluster::new("");
    let (mut jm, jm_metrics) = cluster.start_jobmanager();
    let (mut tm1, _) = cluster.start_taskmanager(&[]);
    let (mut tm2, tm2_metrics) = cluster.start_taskmanager(&[]);

    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    assert_eq!(cluster.overview("slots-total"), Some(4));
    assert_eq!(cluster.overview("slots-available"), Some(4));
    let overview = cluster.rest("/v1/overview").expect("/v1/overview");
    for field in [
        "jobs-running",
        "jobs-finished",
        "jobs-cancelled",
        "jobs-failed",
        "flink-version",
    ] {
        assert!(overview.get(field).is_some(), "/overview lacks {field}: {overview}");
    }

    let tms = cluster.rest("/taskmanagers").expect("/taskmanagers");
    let list = tms["taskmanagers"].as_array().expect("taskmanagers array");
    assert_eq!(list.len(), 2);
    for tm in list {
        assert_eq!(tm["slotsNumber"], 2, "{tm}");
        assert_eq!(tm["freeSlots"], 2, "{tm}");
        assert!(tm["dataPort"].as_u64().unwrap_or(0) > 0, "{tm}");
        assert!(
            tm["path"].as_str().unwrap_or("").starts_with("grpc://127.0.0.1:"),
            "{tm}"
        );
        assert_eq!(tm["memoryConfiguration"]["managedMemory"], 536870920u64, "{tm}");
        assert_eq!(tm["memoryConfiguration"]["networkMemory"], 134217730u64, "{tm}");
        assert_eq!(tm["memoryConfiguration"]["totalProcessMemory"], 1811939328u64, "{tm}");
    }
    let tm_id = list[0]["id"].as_str().expect("id").to_string();
    let one = cluster
        .rest(&format!("/taskmanagers/{tm_id}"))
        .expect("/taskmanagers/:id");
    assert_eq!(one["id"], tm_id.as_str());
    let config = cluster.rest("/jobmanager/config").expect("/jobmanager/config");
    assert!(config
        .as_array()
        .expect("list")
        .iter()
        .any(|e| e["key"] == "rest.port" && e["value"].as_str() == Some(cluster.rest_port.to_string().as_str())));

    let jm_text = get_text(&format!("http://127.0.0.1:{jm_metrics}/metrics")).expect("jm metrics");
    for name in [
        "flink_jobmanager_numRegisteredTaskManagers",
        "flink_jobmanager_taskSlotsTotal",
        "flink_jobmanager_taskSlotsAvailable",
    ] {
        assert!(jm_text.contains(name), "jobmanager metrics lack {name}:\n{jm_text}");
    }
    assert!(
        jm_text.contains("flink_jobmanager_numRegisteredTaskManagers{host=\"127_0_0_1\"} 2"),
        "{jm_text}"
    );
    let tm_text = get_text(&format!("http://127.0.0.1:{tm2_metrics}/metrics")).expect("tm metrics");
    for name in [
        "flink_taskmanager_Status_Flink_Memory_Managed_Total",
        "flink_taskmanager_Status_Network_TotalMemorySegments",
        "flink_taskmanager_Status_JVM_Memory_Heap_Used",
        "flink_taskmanager_Status_JVM_CPU_Load",
    ] {
        assert!(tm_text.contains(name), "taskmanager metrics lack {name}:\n{tm_text}");
    }

    // kill -9 → gone at once (the bound leaves room for a loaded CI machine) although
    // heartbeat.timeout is 50 s. Only once both heartbeat streams are open: a taskmanager
    // killed between its registration and its first beat is found by heartbeat.timeout, as
    // in Flink.
    wait_for(Duration::from_secs(10), "both heartbeat streams open", || {
        (jm.log().matches("Heartbeat stream of registration").count() >= 2).then_some(())
    });
    tm1.kill9();
    let took = cluster.wait_taskmanagers(1, Duration::from_secs(5));
    println!("killed taskmanager left /overview after {} ms", took.as_millis());
    assert_eq!(cluster.overview("slots-total"), Some(2));
    assert!(jm.log().contains("is lost: heartbeat stream broke"), "{}", jm.log());

    // Restart the jobmanager: the survivor registers with the new one.
    let survivor = cluster.rest("/taskmanagers").expect("list")["taskmanagers"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    jm.kill9();
    let (mut jm2, _) = cluster.start_jobmanager();
    let took = cluster.wait_taskmanagers(1, Duration::from_secs(15));
    println!(
        "survivor re-registered with the restarted jobmanager after {} ms",
        took.as_millis()
    );
    let again = cluster.rest("/taskmanagers").expect("list")["taskmanagers"][0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(again, survivor);
    assert!(tm2.log().contains("Registering again"), "{}", tm2.log());

    // SIGTERM → clean deregistration and exit 0.
    tm2.signal(libc::SIGTERM);
    let status = tm2.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "taskmanager exit status {status:?}\n{}", tm2.log());
    cluster.wait_taskmanagers(0, Duration::from_secs(2));
    assert!(
        jm2.log().contains("deregistered (TaskManager shutting down)"),
        "{}",
        jm2.log()
    );
    assert!(tm2.log().contains("Deregistered from the jobmanager."), "{}", tm2.log());

    jm2.signal(libc::SIGTERM);
    let status = jm2.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "jobmanager exit status {status:?}\n{}", jm2.log());
}

#[test]
fn silent_taskmanager_is_lost_after_heartbeat_timeout_and_comes_back() {
    let mut cluster = Cluster::new("heartbeat.interval: 200 ms\nheartbeat.timeout: 1 s\n");
    let (jm, _) = cluster.start_jobmanager();
    let (mut tm, _) = cluster.start_taskmanager(&[]);
    cluster.wait_taskmanagers(1, Duration::from_secs(20));

    // SIGSTOP: the process hangs but its socket stays open; only the timeout can tell.
    tm.signal(libc::SIGSTOP);
    let took = cluster.wait_taskmanagers(0, Duration::from_secs(5));
    println!(
        "stopped taskmanager declared lost after {} ms (heartbeat.timeout 1 s)",
        took.as_millis()
    );
    assert!(took >= Duration::from_millis(500), "lost too early: {took:?}");
    assert!(jm.log().contains("heartbeat timed out after 1000 ms"), "{}", jm.log());

    tm.signal(libc::SIGCONT);
    cluster.wait_taskmanagers(1, Duration::from_secs(10));
    assert!(tm.is_running());
}

#[test]
fn two_taskmanagers_share_a_host_and_a_metrics_range() {
    // Ports given as a range, as a Flink user would for several daemons on one machine.
    let base = sluice_tests::free_port();
    let mut cluster = Cluster::new("");
    let (_jm, _) = cluster.start_jobmanager();
    let range = format!("metrics.reporter.prom.port={base}-{}", base + 20);
    let (_a, _) = cluster.start_taskmanager(&["-D", &range]);
    let (_b, _) = cluster.start_taskmanager(&["-D", &range]);
    cluster.wait_taskmanagers(2, Duration::from_secs(20));
    let served = wait_for(Duration::from_secs(5), "two metrics endpoints in the range", || {
        let n = (base..=base + 20)
            .filter(|p| {
                get_text(&format!("http://127.0.0.1:{p}/metrics")).is_some_and(|t| t.contains("flink_taskmanager_"))
            })
            .count();
        (n == 2).then_some(n)
    });
    assert_eq!(served, 2);
}
