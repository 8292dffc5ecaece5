//! A short, seeded run of every parser fuzz target (the checks of
//! `tests/fuzz/checks.rs`) over random mutations of valid requests, lines and
//! files, and one regression test per rule those targets found broken.

/// `parse_peer_line` took an `rc` line longer than `REPLY_LINE_LEN_MAX` when it
/// arrived whole, but refused it when a read split it before its end.
#[test]
fn an_rc_line_past_the_line_limit_is_refused_however_it_arrives() {
    use ringcache::cluster::wire::{parse_peer_line, REPLY_LINE_LEN_MAX};
    let mut line = b"rc fwd 3".to_vec();
    line.resize(REPLY_LINE_LEN_MAX + 10, b' ');
    line.extend_from_slice(b"\r\n");
    assert_eq!(parse_peer_line(&line), Err(line.len()));
    let split = REPLY_LINE_LEN_MAX + 1;
    assert_eq!(parse_peer_line(&line[..split]), Err(split));
    let mut longest = b"rc fwd 3".to_vec();
    longest.resize(REPLY_LINE_LEN_MAX, b' ');
    longest.push(b'\n');
    assert!(matches!(parse_peer_line(&longest), Ok(Some(_))));
}
