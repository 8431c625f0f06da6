//! Every refused input is counted once (issue 17): well-formed ChangeCipherSpec records
//! (ignored: the record epoch says which keys apply) in `ignored_change_cipher_specs`, and
//! plaintext handshake fragments buffered and then thrown away (replaced after a conflict,
//! or from before the first message of their flight) in `superseded_fragments`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use callsec_dtls::{Connection, Stats};
use callsec_tests::pair::{Netem, Pair};

mod support;
use support::wire::{fragment, record};

/// One counter of [`Stats`].
type Counter = fn(&Stats) -> u64;

/// Every counter of refused or ignored input, summed.
fn refused(s: &Stats) -> u64 {
    s.dropped_records
        + s.replayed_records
        + s.discarded_messages
        + s.superseded_fragments
        + s.ignored_change_cipher_specs
}

fn fresh() -> Pair {
    Pair::new(600, Netem::default(), |c| c.cookie_exchange = false)
}

#[test]
fn a_clean_handshake_counts_only_the_peers_change_cipher_spec() {
    let mut p = fresh();
    p.drive();
    assert!(p.client.is_connected() && p.server.is_connected());
    for s in [p.client.stats(), p.server.stats()] {
        assert_eq!(s.ignored_change_cipher_specs, 1, "{s:?}");
        assert_eq!(refused(&s), 1, "{s:?}");
    }
}

/// One input, one count: each datagram below holds one input the client refuses or
/// ignores (before the server's flight 4), and the counters grow by exactly one per input;
/// a fragment buffered and later thrown away counts when it is thrown away.
#[test]
fn each_refused_input_counts_once() {
    let mut p = fresh();
    let inputs: [(&str, Vec<u8>, Counter); 6] = [
        ("plaintext ChangeCipherSpec", record(20, 0, 50, &[1]), |s| {
            s.ignored_change_cipher_specs
        }),
        ("empty ChangeCipherSpec", record(20, 0, 51, &[]), |s| {
            s.dropped_records
        }),
        ("plaintext fatal alert", record(21, 0, 52, &[2, 40]), |s| {
            s.discarded_messages
        }),
        ("empty alert", record(21, 0, 53, &[]), |s| s.dropped_records),
        (
            "truncated handshake header",
            record(22, 0, 54, &[13, 0]),
            |s| s.dropped_records,
        ),
        ("future epoch", record(22, 7, 55, &[0; 30]), |s| {
            s.dropped_records
        }),
    ];
    for (what, d, counter) in &inputs {
        let before = p.client.stats();
        p.client.handle_datagram(p.now, d).unwrap();
        let after = p.client.stats();
        assert_eq!(refused(&after) - refused(&before), 1, "{what}: {after:?}");
        assert_eq!(counter(&after) - counter(&before), 1, "{what}");
    }
    // Half a CertificateRequest at the message_seq the genuine one will have (3): buffered,
    // not counted yet ...
    let before = p.client.stats();
    let half = record(22, 0, 56, &fragment(13, 10, 3, 0, b"abcd"));
    p.client.handle_datagram(p.now, &half).unwrap();
    assert_eq!(refused(&p.client.stats()), refused(&before));
    // ... replaced by a conflicting one (another length): the first is thrown away, counted.
    let before = p.client.stats();
    let conflicting = record(22, 0, 57, &fragment(13, 12, 3, 0, b"ab"));
    p.client.handle_datagram(p.now, &conflicting).unwrap();
    let after = p.client.stats();
    assert_eq!(after.superseded_fragments - before.superseded_fragments, 1);
    assert_eq!(refused(&after) - refused(&before), 1);
    // ... overlapping bytes that disagree: replaced again, counted again.
    let disagreeing = record(22, 0, 58, &fragment(13, 12, 3, 0, b"xy"));
    p.client.handle_datagram(p.now, &disagreeing).unwrap();
    assert_eq!(p.client.stats().superseded_fragments, 2);
    // The genuine flight 4 comes: its first message drops the fragment from before it
    // (counted), and the handshake completes. Apart from these, the client counts only the
    // server's ChangeCipherSpec.
    p.drive();
    assert!(p.client.is_connected() && p.server.is_connected());
    let s = p.client.stats();
    assert_eq!(s.superseded_fragments, 3, "{s:?}");
    assert_eq!(s.ignored_change_cipher_specs, 2, "{s:?}");
    assert_eq!(refused(&s), inputs.len() as u64 + 3 + 1, "{s:?}");
}

/// After the handshake, a replayed plaintext ChangeCipherSpec and an authenticated one are
/// ignored and counted.
#[test]
fn change_cipher_specs_after_the_handshake_are_counted() {
    let mut p = fresh();
    p.drive();
    let before = p.server.stats();
    let c: &mut Connection = &mut p.server;
    c.handle_datagram(p.now, &record(20, 0, 70, &[1])).unwrap();
    let after = c.stats();
    assert_eq!(
        after.ignored_change_cipher_specs - before.ignored_change_cipher_specs,
        1
    );
    assert_eq!(refused(&after) - refused(&before), 1);
    assert!(c.is_connected());
}
