//! The decision on recorded metric series, in the manner of Flink's `JobVertexScalerTest`:
//! steady load, a step up, a step down, a backlog to catch up, key-group alignment and an
//! ineffective scale-up.

use super::*;
use std::time::Duration;

/// A source at parallelism 1 feeding a keyed vertex at `p`.
fn job(p: u32) -> Vec<VertexInfo> {
    vec![
        VertexInfo {
            id: "source".into(),
            parallelism: 1,
            inputs: vec![],
            source: true,
            keyed: false,
            partitions: None,
        },
        VertexInfo {
            id: "work".into(),
            parallelism: p,
            inputs: vec![0],
            source: false,
            keyed: true,
            partitions: None,
        },
    ]
}

/// The source emits `rate`/s with its backlog at `lag` growing by `lag_rate`/s; the keyed
/// vertex takes the same rate, its busiest subtask busy `busy` ms per second.
fn series(rate: f64, lag: f64, lag_rate: f64, busy: f64) -> Vec<VertexMetrics> {
    vec![
        VertexMetrics {
            input_rate: rate,
            output_rate: rate,
            busy: 10.0,
            backpressured: if lag_rate > 0.0 { 900.0 } else { 0.0 },
            lag,
            lag_rate,
            has_lag: true,
        },
        VertexMetrics {
            input_rate: rate,
            output_rate: rate / 100.0,
            busy,
            ..VertexMetrics::default()
        },
    ]
}

fn run(p: u32, metrics: &[VertexMetrics], key_groups: u32) -> Vec<(u32, u32)> {
    let s = AutoscalerSettings::for_tests();
    let vertices = job(p);
    let evaluated = evaluate(&s, &vertices, metrics);
    decide(&s, &vertices, &evaluated, key_groups, &|_| None)
        .into_iter()
        .map(|p| (p.from, p.to))
        .collect()
}

#[test]
fn steady_load_inside_the_boundary_keeps_the_parallelism() {
    // 1000/s at 2/3 busy: a true rate of 1500/s, utilization 0.67.
    assert_eq!(run(1, &series(1000.0, 0.0, 0.0, 667.0), 120), vec![]);
    let s = AutoscalerSettings::for_tests();
    let e = evaluate(&s, &job(1), &series(1000.0, 0.0, 0.0, 667.0));
    assert!((e[1].true_rate - 1499.25).abs() < 0.01);
    assert!((e[1].utilization - 0.667).abs() < 0.001);
}

#[test]
fn a_step_up_scales_to_the_target_utilization() {
    // Arrivals rose to 3000/s: the source emits the 1000/s the saturated vertex takes and its
    // backlog grows by 2000/s. Capacity needed: 3000 / 0.7 + 3000 · 5 min / 30 min = 4786/s.
    assert_eq!(run(1, &series(1000.0, 0.0, 2000.0, 1000.0), 120), vec![(1, 5)]);
    let s = AutoscalerSettings::for_tests();
    let e = evaluate(&s, &job(1), &series(1000.0, 0.0, 2000.0, 1000.0));
    assert_eq!((e[0].target_rate, e[1].target_rate), (3000.0, 3000.0));
}

#[test]
fn a_step_down_is_clamped_by_the_max_factor() {
    // 300/s on 4 subtasks each 10 % busy: true rate 3000/s; the factor 0.16 is clamped to
    // 1 - 0.6, so 4 → 2.
    assert_eq!(run(4, &series(300.0, 0.0, 0.0, 100.0), 120), vec![(4, 2)]);
}

#[test]
fn a_backlog_to_catch_up_adds_capacity() {
    // 1000/s at a true rate of 1400/s is inside the boundary without a backlog ...
    assert_eq!(run(2, &series(1000.0, 0.0, 0.0, 714.3), 120), vec![]);
    // ... but 1.8M pending records to work off within 30 min need 1000/s more.
    assert_eq!(run(2, &series(1000.0, 1_800_000.0, 0.0, 714.3), 120), vec![(2, 4)]);
}

#[test]
fn keyed_vertices_align_to_a_divisor_of_the_key_groups() {
    // The step up wants 5: with 128 key groups the next divisor is 8.
    assert_eq!(run(1, &series(1000.0, 0.0, 2000.0, 1000.0), 128), vec![(1, 8)]);
    assert_eq!(align(5, 128, 64), 8);
    assert_eq!(align(5, 120, 60), 5);
    assert_eq!(align(7, 120, 60), 8);
    assert_eq!(align(70, 128, 64), 70, "no divisor up to half: as computed");
    assert_eq!(align(5, 16, 16), 8, "a source with 16 partitions");
    assert_eq!(align(10, 16, 16), 16, "past half the partitions: one each");
    assert_eq!(align(10, 16, 12), 10, "bounded below the partition count: as computed");
}

#[test]
fn bounds_and_an_ineffective_scale_up() {
    let mut s = AutoscalerSettings::for_tests();
    s.max_parallelism = 3;
    let vertices = job(1);
    let e = evaluate(&s, &vertices, &series(1000.0, 0.0, 2000.0, 1000.0));
    assert_eq!(decide(&s, &vertices, &e, 120, &|_| None)[0].to, 3);
    // The last scale-up (1 → 2) did not raise the true rate: with detection on, no more.
    s.max_parallelism = 200;
    s.effectiveness_detection = true;
    let vertices = job(2);
    let last = LastScaleUp {
        true_rate: 1000.0,
        from: 1,
        to: 2,
    };
    let e = evaluate(&s, &vertices, &series(1000.0, 0.0, 2000.0, 1000.0));
    assert_eq!(decide(&s, &vertices, &e, 120, &|_| Some(last)), vec![]);
    s.effectiveness_detection = false;
    assert_eq!(decide(&s, &vertices, &e, 120, &|_| Some(last)).len(), 1);
    assert_eq!(s.catch_up, Duration::from_secs(1800));
}
