//! The text protocol, black box: tables of (request bytes, expected reply bytes)
//! for every text command and every error reply (does I/O: real servers, real
//! sockets).
//!
//! Each table runs against ringcache with `-t 1` and with `-t 2` (many keys, so
//! both shards own some and multi-key requests are split by owner), and against
//! memcached 1.6, which proves the expected bytes right: a row memcached fails
//! is a wrong row. In expected replies `{cas}` stands for a CAS number (the
//! last one seen is substituted for `{cas}` in later requests) and `{any}` for
//! the rest of a line.
//!
//! After each request the runner sends `version\r\n` and reads up to its reply,
//! so a missing or extra reply shows up at the row that caused it.

mod support;

use std::time::Duration;
use support::table::{self, closes, row, split_row, Expect, Reference, Step};
use support::{show, Server};

/// `set`-family request: `<cmd> <key> <flags> <exptime> <len>[ noreply]\r\n<data>\r\n`.
fn store(cmd: &str, key: &str, flags: u32, exptime: i64, data: &[u8], noreply: bool) -> Vec<u8> {
    let mut request = format!(
        "{cmd} {key} {flags} {exptime} {}{}\r\n",
        data.len(),
        if noreply { " noreply" } else { "" }
    )
    .into_bytes();
    request.extend_from_slice(data);
    request.extend_from_slice(b"\r\n");
    request
}

fn set(key: &str, data: &str) -> Vec<u8> {
    store("set", key, 0, 0, data.as_bytes(), false)
}

/// `VALUE <key> <flags> <len>\r\n<data>\r\n`.
fn value(key: &str, flags: u32, data: &str) -> String {
    format!("VALUE {key} {flags} {}\r\n{data}\r\n", data.len())
}

/// `VALUE <key> <flags> <len> {cas}\r\n<data>\r\n`.
fn value_cas(key: &str, flags: u32, data: &str) -> String {
    format!("VALUE {key} {flags} {} {{cas}}\r\n{data}\r\n", data.len())
}

/// Runs a text table on ringcache `-t 1`, `-t 2` and memcached, `args` added to each.
fn run_table(table: &str, args: &[&str], steps: &[Step]) {
    table::run_steps_on(table, servers(args), &table::VERSION, steps);
}

fn servers(args: &[&str]) -> Vec<Server> {
    table::servers(args, Reference::Memcached)
}

/// Keys `k0`..`k<n-1>`: with two shards, some land on each.
fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k{i}")).collect()
}

#[test]
fn set_add_replace_append_prepend_store_or_refuse_as_memcached() {
    let steps = vec![
        row(set("a", "1"), "STORED\r\n"),
        row(store("set", "a", 7, 0, b"hello", false), "STORED\r\n"),
        row("get a\r\n", value("a", 7, "hello") + "END\r\n"),
        row(store("set", "a", 9, 0, b"bye", true), ""),
        row("get a\r\n", value("a", 9, "bye") + "END\r\n"),
        row(store("add", "a", 0, 0, b"x", false), "NOT_STORED\r\n"),
        row(store("add", "a", 0, 0, b"x", true), ""),
        row(store("add", "b", 3, 0, b"new", false), "STORED\r\n"),
        row(store("add", "c", 0, 0, b"n", true), ""),
        row(
            "get b c\r\n",
            value("b", 3, "new") + &value("c", 0, "n") + "END\r\n",
        ),
        row(store("replace", "a", 5, 0, b"rep", false), "STORED\r\n"),
        row(
            store("replace", "nope", 0, 0, b"x", false),
            "NOT_STORED\r\n",
        ),
        row(store("replace", "nope", 0, 0, b"x", true), ""),
        row("get a nope\r\n", value("a", 5, "rep") + "END\r\n"),
        // append and prepend keep the item's flags and ignore theirs.
        row(store("append", "a", 99, 0, b"-end", false), "STORED\r\n"),
        row(store("prepend", "a", 98, 0, b"start-", false), "STORED\r\n"),
        row(store("append", "a", 0, 0, b"!", true), ""),
        row("get a\r\n", value("a", 5, "start-rep-end!") + "END\r\n"),
        row(store("append", "nope", 0, 0, b"x", false), "NOT_STORED\r\n"),
        row(
            store("prepend", "nope", 0, 0, b"x", false),
            "NOT_STORED\r\n",
        ),
        row(store("append", "nope", 0, 0, b"x", true), ""),
        row("get nope\r\n", "END\r\n"),
        // Empty values, the largest flags, data holding \r\n and binary bytes.
        row(set("empty", ""), "STORED\r\n"),
        row("get empty\r\n", "VALUE empty 0 0\r\n\r\nEND\r\n"),
        row(store("set", "f", 4294967295, 0, b"x", false), "STORED\r\n"),
        row("get f\r\n", value("f", 4294967295, "x") + "END\r\n"),
        row(store("set", "crlf", 0, 0, b"\r\n\r\n", false), "STORED\r\n"),
        row("get crlf\r\n", "VALUE crlf 0 4\r\n\r\n\r\n\r\nEND\r\n"),
        row(
            store("set", "bin", 0, 0, b"\x00\xff\x80 \t", false),
            "STORED\r\n",
        ),
        row(
            "get bin\r\n",
            b"VALUE bin 0 5\r\n\x00\xff\x80 \t\r\nEND\r\n".as_slice(),
        ),
        row(store("append", "empty", 0, 0, b"now", false), "STORED\r\n"),
        row("get empty\r\n", value("empty", 0, "now") + "END\r\n"),
        // Extra spaces between tokens and a bare \n ending are accepted.
        row("set  sp  1  0  2 \r\nab\r\n", "STORED\r\n"),
        row("get sp\n", value("sp", 1, "ab") + "END\r\n"),
        // A length with a leading + or zeros is still a number.
        row("set plus 0 0 +2\r\nab\r\n", "STORED\r\n"),
        row("set zero 0 0 02\r\nab\r\n", "STORED\r\n"),
        row(
            "get plus zero\r\n",
            value("plus", 0, "ab") + &value("zero", 0, "ab") + "END\r\n",
        ),
    ];
    run_table("storage", &[], &steps);
}

#[test]
fn cas_stores_only_over_the_value_it_read() {
    let steps = vec![
        row(store("cas", "c", 0, 0, b"x", false), "ERROR\r\nERROR\r\n"),
        row("cas nope 0 0 1 1\r\nx\r\n", "NOT_FOUND\r\n"),
        row("cas nope 0 0 1 1 noreply\r\nx\r\n", ""),
        row(store("set", "c", 3, 0, b"hi", false), "STORED\r\n"),
        row("gets c\r\n", value_cas("c", 3, "hi") + "END\r\n"),
        row("cas c 4 0 3 {cas}\r\nnew\r\n", "STORED\r\n"),
        // The CAS read before the cas above is stale now.
        row("gets c\r\n", value_cas("c", 4, "new") + "END\r\n"),
        row(set("c", "other"), "STORED\r\n"),
        row("cas c 0 0 1 {cas}\r\nx\r\n", "EXISTS\r\n"),
        row("cas c 0 0 1 {cas} noreply\r\nx\r\n", ""),
        row("get c\r\n", value("c", 0, "other") + "END\r\n"),
        row("gets c\r\n", value_cas("c", 0, "other") + "END\r\n"),
        row("cas c 0 0 2 {cas} noreply\r\nok\r\n", ""),
        row("get c\r\n", value("c", 0, "ok") + "END\r\n"),
        // Every change gives a new CAS: append, incr, touch does not.
        row("gets c\r\n", value_cas("c", 0, "ok") + "END\r\n"),
        row(store("append", "c", 0, 0, b"!", false), "STORED\r\n"),
        row("cas c 0 0 1 {cas}\r\nx\r\n", "EXISTS\r\n"),
        row(set("n", "5"), "STORED\r\n"),
        row("gets n\r\n", value_cas("n", 0, "5") + "END\r\n"),
        row("incr n 1\r\n", "6\r\n"),
        row("cas n 0 0 1 {cas}\r\nx\r\n", "EXISTS\r\n"),
        row("gets n\r\n", value_cas("n", 0, "6") + "END\r\n"),
        row("touch n 100\r\n", "TOUCHED\r\n"),
        row("cas n 0 0 1 {cas}\r\n7\r\n", "STORED\r\n"),
        row("get n\r\n", value("n", 0, "7") + "END\r\n"),
        // Bad CAS numbers are bad command lines and the data line is then a command.
        row(
            "cas c 0 0 1 abc\r\nx\r\n",
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        row(
            "cas c 0 0 1 -1\r\nx\r\n",
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
    ];
    run_table("cas", &[], &steps);
}

#[test]
fn get_gets_gat_gats_answer_many_keys_across_shards() {
    let keys = keys(32);
    let mut steps = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        if i % 3 != 2 {
            steps.push(row(
                store(
                    "set",
                    key,
                    i as u32,
                    0,
                    format!("v{i}").as_bytes(),
                    i % 2 == 0,
                ),
                if i % 2 == 0 { "" } else { "STORED\r\n" },
            ));
        }
    }
    let all = keys.join(" ");
    let hits = |with_cas: bool| {
        keys.iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 2)
            .map(|(i, k)| {
                let data = format!("v{i}");
                if with_cas {
                    value_cas(k, i as u32, &data)
                } else {
                    value(k, i as u32, &data)
                }
            })
            .collect::<String>()
            + "END\r\n"
    };
    steps.push(row(format!("get {all}\r\n"), hits(false)));
    steps.push(row(format!("gets {all}\r\n"), hits(true)));
    steps.push(row(format!("gat 100 {all}\r\n"), hits(false)));
    steps.push(row(format!("gats 0 {all}\r\n"), hits(true)));
    // Replies come in request order, repeated keys repeat.
    steps.push(row(
        "get k1 k0 k1 k2 k1\r\n",
        value("k1", 1, "v1")
            + &value("k0", 0, "v0")
            + &value("k1", 1, "v1")
            + &value("k1", 1, "v1")
            + "END\r\n",
    ));
    steps.push(row("get k2 k5 missing\r\n", "END\r\n"));
    steps.push(row("get\r\n", "ERROR\r\n"));
    steps.push(row("gets\r\n", "ERROR\r\n"));
    steps.push(row("gat\r\n", "ERROR\r\n"));
    // With no key, memcached answers an empty hit list.
    steps.push(row("gat 100\r\n", "END\r\n"));
    steps.push(row("gats 100\r\n", "END\r\n"));
    steps.push(row("gats\r\n", "ERROR\r\n"));
    steps.push(row(
        "gat k0\r\n",
        "CLIENT_ERROR invalid exptime argument\r\n",
    ));
    steps.push(row(
        "gat x k0\r\n",
        "CLIENT_ERROR invalid exptime argument\r\n",
    ));
    steps.push(row(
        "gats x k0\r\n",
        "CLIENT_ERROR invalid exptime argument\r\n",
    ));
    steps.push(row("gat 100 missing\r\n", "END\r\n"));
    // gat with a negative time returns the item, then it is gone.
    steps.push(row(
        "gat -1 k0 k1\r\n",
        value("k0", 0, "v0") + &value("k1", 1, "v1") + "END\r\n",
    ));
    steps.push(row("get k0 k1 k3\r\n", value("k3", 3, "v3") + "END\r\n"));
    steps.push(row("gets k3\r\n", value_cas("k3", 3, "v3") + "END\r\n"));
    // gat keeps the CAS.
    steps.push(row("gats 100 k3\r\n", value_cas("k3", 3, "v3") + "END\r\n"));
    steps.push(row("cas k3 0 0 1 {cas}\r\nz\r\n", "STORED\r\n"));
    // A 250-byte key is a key.
    let long_key = "k".repeat(250);
    steps.push(row(set(&long_key, "L"), "STORED\r\n"));
    steps.push(row(
        format!("get {long_key} k3\r\n"),
        value(&long_key, 0, "L") + &value("k3", 0, "z") + "END\r\n",
    ));
    run_table("retrieval", &[], &steps);
}

#[test]
fn delete_removes_and_says_whether_it_did() {
    let steps = vec![
        row(set("d", "1"), "STORED\r\n"),
        row("delete d\r\n", "DELETED\r\n"),
        row("delete d\r\n", "NOT_FOUND\r\n"),
        row(set("d", "1"), "STORED\r\n"),
        row("delete d noreply\r\n", ""),
        row("get d\r\n", "END\r\n"),
        row("delete d noreply\r\n", ""),
        // memcached still takes a time of 0 (an old client's habit), nothing else.
        row(set("d", "1"), "STORED\r\n"),
        row("delete d 0\r\n", "DELETED\r\n"),
        row("delete d 0\r\n", "NOT_FOUND\r\n"),
        row(
            "delete d 1\r\n",
            "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n",
        ),
        row("delete d 0 noreply\r\n", ""),
        row("delete d x y z\r\n", "ERROR\r\n"),
        row("delete\r\n", "ERROR\r\n"),
    ];
    run_table("delete", &[], &steps);
}

#[test]
fn incr_decr_wrap_at_2_pow_64_stop_at_zero_and_pad_in_place() {
    let steps = vec![
        row(set("n", "10"), "STORED\r\n"),
        row("incr n 5\r\n", "15\r\n"),
        row("decr n 6\r\n", "9\r\n"),
        // A shorter number keeps the old length, padded with spaces.
        row("get n\r\n", "VALUE n 0 2\r\n9 \r\nEND\r\n"),
        row("incr n 1\r\n", "10\r\n"),
        row("get n\r\n", value("n", 0, "10") + "END\r\n"),
        row("incr n 90\r\n", "100\r\n"),
        row("get n\r\n", value("n", 0, "100") + "END\r\n"),
        row("decr n 1000\r\n", "0\r\n"),
        row("get n\r\n", "VALUE n 0 3\r\n0  \r\nEND\r\n"),
        row("decr n 1\r\n", "0\r\n"),
        row(set("n", "18446744073709551615"), "STORED\r\n"),
        row("incr n 1\r\n", "0\r\n"),
        row(set("n", "18446744073709551610"), "STORED\r\n"),
        row("incr n 10\r\n", "4\r\n"),
        row(set("n", "9"), "STORED\r\n"),
        row("incr n 18446744073709551615\r\n", "8\r\n"),
        row("incr n 3 noreply\r\n", ""),
        row("decr n 1 noreply\r\n", ""),
        row("get n\r\n", value("n", 0, "10") + "END\r\n"),
        // Flags stay.
        row(store("set", "f", 42, 0, b"1", false), "STORED\r\n"),
        row("incr f 1\r\n", "2\r\n"),
        row("get f\r\n", value("f", 42, "2") + "END\r\n"),
        row("incr nope 1\r\n", "NOT_FOUND\r\n"),
        row("decr nope 1\r\n", "NOT_FOUND\r\n"),
        row("incr nope 1 noreply\r\n", ""),
        row(set("s", "abc"), "STORED\r\n"),
        row(
            "incr s 1\r\n",
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        row(
            "decr s 1\r\n",
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        row(set("s", "12a"), "STORED\r\n"),
        row(
            "incr s 1\r\n",
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        row(set("s", "18446744073709551616"), "STORED\r\n"),
        row(
            "incr s 1\r\n",
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        row(
            "incr n abc\r\n",
            "CLIENT_ERROR invalid numeric delta argument\r\n",
        ),
        row(
            "incr n -1\r\n",
            "CLIENT_ERROR invalid numeric delta argument\r\n",
        ),
        row(
            "decr n 18446744073709551616\r\n",
            "CLIENT_ERROR invalid numeric delta argument\r\n",
        ),
        row("incr n\r\n", "ERROR\r\n"),
        row("incr\r\n", "ERROR\r\n"),
        row("decr n 1 2 3\r\n", "ERROR\r\n"),
        row("get n\r\n", value("n", 0, "10") + "END\r\n"),
    ];
    run_table("incr/decr", &[], &steps);
}

#[test]
fn touch_sets_a_new_expiry_without_reading() {
    let steps = vec![
        row(set("t", "v"), "STORED\r\n"),
        row("touch t 100\r\n", "TOUCHED\r\n"),
        row("touch nope 100\r\n", "NOT_FOUND\r\n"),
        row("touch t 100 noreply\r\n", ""),
        row("touch nope 100 noreply\r\n", ""),
        row("touch t\r\n", "ERROR\r\n"),
        row("touch t x\r\n", "CLIENT_ERROR invalid exptime argument\r\n"),
        row("touch t 1 2 3\r\n", "ERROR\r\n"),
        row("get t\r\n", value("t", 0, "v") + "END\r\n"),
        row("touch t -1\r\n", "TOUCHED\r\n"),
        row("get t\r\n", "END\r\n"),
    ];
    run_table("touch", &[], &steps);
}

#[test]
fn flush_all_empties_now_or_later_and_takes_noreply() {
    let steps = vec![
        row(set("a", "1"), "STORED\r\n"),
        row(set("b", "2"), "STORED\r\n"),
        row("flush_all\r\n", "OK\r\n"),
        row("get a b\r\n", "END\r\n"),
        row(set("a", "1"), "STORED\r\n"),
        row("get a\r\n", value("a", 0, "1") + "END\r\n"),
        row("flush_all 0\r\n", "OK\r\n"),
        row("get a\r\n", "END\r\n"),
        row(set("a", "1"), "STORED\r\n"),
        row("flush_all noreply\r\n", ""),
        row("get a\r\n", "END\r\n"),
        // A delay far ahead flushes nothing yet; a later flush_all replaces it.
        row(set("a", "1"), "STORED\r\n"),
        row("flush_all 1000\r\n", "OK\r\n"),
        row("get a\r\n", value("a", 0, "1") + "END\r\n"),
        row("flush_all 1000 noreply\r\n", ""),
        row("get a\r\n", value("a", 0, "1") + "END\r\n"),
        row("flush_all 0 noreply\r\n", ""),
        row("get a\r\n", "END\r\n"),
        row(
            "flush_all x\r\n",
            "CLIENT_ERROR invalid exptime argument\r\n",
        ),
        row("flush_all 1 2 3\r\n", "ERROR\r\n"),
        // A negative delay flushes now.
        row(set("a", "1"), "STORED\r\n"),
        row("flush_all -1\r\n", "OK\r\n"),
        row("get a\r\n", "END\r\n"),
    ];
    run_table("flush_all", &[], &steps);
}

#[test]
fn version_verbosity_cache_memlimit_shutdown_and_quit() {
    let steps = vec![
        row("version\r\n", "VERSION {any}\r\n"),
        row("version x\r\n", "VERSION {any}\r\n"),
        row("verbosity 1\r\n", "OK\r\n"),
        row("verbosity 0 noreply\r\n", ""),
        row("verbosity\r\n", "ERROR\r\n"),
        row(
            "verbosity x\r\n",
            "CLIENT_ERROR bad command line format\r\n",
        ),
        row("cache_memlimit 100\r\n", "OK\r\n"),
        row("cache_memlimit 64 noreply\r\n", ""),
        row(
            "cache_memlimit 0\r\n",
            "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n",
        ),
        row("cache_memlimit x\r\n", "ERROR\r\n"),
        row("cache_memlimit\r\n", "ERROR\r\n"),
        row("shutdown\r\n", "ERROR: shutdown not enabled\r\n"),
        row("shutdown graceful\r\n", "ERROR: shutdown not enabled\r\n"),
        row(set("q", "1"), "STORED\r\n"),
        closes("quit\r\n"),
        // A fresh connection (opened by the runner) still sees the data.
        row("get q\r\n", value("q", 0, "1") + "END\r\n"),
        closes("get q\r\nquit\r\nget q\r\n").with_reply(value("q", 0, "1") + "END\r\n"),
    ];
    run_table("misc", &[], &steps);
}

impl Step {
    fn with_reply(mut self, reply: impl AsRef<[u8]>) -> Step {
        self.expect = match self.expect {
            Expect::Closed(_) => Expect::Closed(reply.as_ref().to_vec()),
            Expect::Reply(_) => Expect::Reply(reply.as_ref().to_vec()),
        };
        self
    }
}

#[test]
fn expiry_is_relative_absolute_past_30_days_and_negative_is_gone() {
    let now = support::unix_now_secs() as i64;
    let steps = vec![
        row(store("set", "neg", 0, -1, b"x", false), "STORED\r\n"),
        row("get neg\r\n", "END\r\n"),
        row(store("add", "neg", 0, 0, b"y", false), "STORED\r\n"),
        row("get neg\r\n", value("neg", 0, "y") + "END\r\n"),
        // 30 days exactly is still relative.
        row(store("set", "rel", 0, 2_592_000, b"x", false), "STORED\r\n"),
        row("get rel\r\n", value("rel", 0, "x") + "END\r\n"),
        // One more second is an absolute time in 1970: already gone.
        row(store("set", "abs", 0, 2_592_001, b"x", false), "STORED\r\n"),
        row("get abs\r\n", "END\r\n"),
        row(
            store("set", "past", 0, now - 100, b"x", false),
            "STORED\r\n",
        ),
        row("get past\r\n", "END\r\n"),
        row(
            store("set", "future", 0, now + 3600, b"x", false),
            "STORED\r\n",
        ),
        row("get future\r\n", value("future", 0, "x") + "END\r\n"),
        row(
            "set bad 0 x 1\r\nx\r\n",
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
    ];
    run_table("expiry (no waiting)", &[], &steps);
}

/// The only test here that waits: items live for 2 s, the test looks after 4.5 s.
#[test]
fn items_expire_after_their_relative_or_absolute_time() {
    let mut failures = Vec::new();
    for server in servers(&[]) {
        let mut client = server.connect();
        let now = support::unix_now_secs();
        let setup = [
            store("set", "rel", 0, 2, b"r", false),
            store("set", "abs", 0, (now + 2) as i64, b"a", false),
            store("set", "stay", 0, 100, b"s", false),
            store("set", "gat", 0, 0, b"g", false),
            store("set", "touch", 0, 100, b"t", false),
        ];
        for request in &setup {
            client.call(request, b"\r\n");
        }
        client.call(b"gat 2 gat\r\n", b"END\r\n");
        client.call(b"touch touch 2\r\n", b"\r\n");
        let before = client.call(b"get rel abs stay gat touch\r\n", b"END\r\n");
        std::thread::sleep(Duration::from_millis(4500));
        let after = client.call(b"get rel abs stay gat touch\r\n", b"END\r\n");
        let expected_before = value("rel", 0, "r")
            + &value("abs", 0, "a")
            + &value("stay", 0, "s")
            + &value("gat", 0, "g")
            + &value("touch", 0, "t")
            + "END\r\n";
        let expected_after = value("stay", 0, "s") + "END\r\n";
        if before != expected_before.as_bytes() || after != expected_after.as_bytes() {
            failures.push(format!(
                "[{}] before: {} after: {}",
                server.name,
                show(&before),
                show(&after)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn errors_are_answered_as_memcached_answers_them() {
    let key_250 = "k".repeat(250);
    let key_251 = "k".repeat(251);
    let too_large = 1_048_515; // 56 + key 3 + 1 + this + 2 > 1 MiB with `-I 1m`
    let steps = vec![
        row("bogus\r\n", "ERROR\r\n"),
        row("GET a\r\n", "ERROR\r\n"),
        row("\r\n", "ERROR\r\n"),
        row("   \r\n", "ERROR\r\n"),
        // Keys: 250 bytes is fine, 251 is a bad command line.
        row(set(&key_250, "x"), "STORED\r\n"),
        row(
            set(&key_251, "x"),
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        row(
            format!("get {key_251}\r\n"),
            "CLIENT_ERROR bad command line format\r\n",
        ),
        // memcached drops the hits already found when a later key is too long.
        row(
            format!("get {key_250} {key_251}\r\n"),
            "CLIENT_ERROR bad command line format\r\n",
        ),
        row(
            format!("delete {key_251}\r\n"),
            "CLIENT_ERROR bad command line format\r\n",
        ),
        row(
            format!("incr {key_251} 1\r\n"),
            "CLIENT_ERROR bad command line format\r\n",
        ),
        row(
            format!("touch {key_251} 1\r\n"),
            "CLIENT_ERROR bad command line format\r\n",
        ),
        row(
            format!("gat 0 {key_251}\r\n"),
            "CLIENT_ERROR bad command line format\r\n",
        ),
        // Bad command lines: the data line that follows is read as a command.
        row(
            "set a 0 0 z\r\nx\r\n",
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        row(
            "set a 0 0 -1\r\n",
            "CLIENT_ERROR bad command line format\r\n",
        ),
        row(
            "set a x 0 1\r\nx\r\n",
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        row(
            "set a -1 0 1\r\nx\r\n",
            "CLIENT_ERROR bad command line format\r\nERROR\r\n",
        ),
        row("set a 0 0\r\n", "ERROR\r\n"),
        row("set a\r\n", "ERROR\r\n"),
        row("set a 0 0 1 noreply extra\r\nx\r\n", "ERROR\r\nERROR\r\n"),
        // Bad data chunk: the block does not end in \r\n where the length says.
        row(
            "set a 0 0 1\r\nxy\r\n",
            "CLIENT_ERROR bad data chunk\r\nERROR\r\n",
        ),
        row("set a 0 0 1 noreply\r\nxyz\r\n", "ERROR\r\n"),
        row("get a\r\n", "END\r\n"),
        // Too large: refused, its data block swallowed, the connection goes on.
        row(
            store("set", "big", 0, 0, &vec![b'x'; too_large], false),
            "SERVER_ERROR object too large for cache\r\n",
        ),
        row(
            store("set", "big", 0, 0, &vec![b'x'; 2_000_000], false),
            "SERVER_ERROR object too large for cache\r\n",
        ),
        row("get big\r\n", "END\r\n"),
        row(
            store("set", "big", 0, 0, &vec![b'x'; too_large - 1], false),
            "STORED\r\n",
        ),
        row(
            store("set", "big", 1, 0, &vec![b'x'; too_large - 4], false),
            "SERVER_ERROR object too large for cache\r\n",
        ),
        row(set("after", "ok"), "STORED\r\n"),
        row("get after\r\n", value("after", 0, "ok") + "END\r\n"),
        // A long multi-key get is not an over-long line, even sent in two parts.
        split_row(format!("get {}\r\n", keys(1000).join(" ")), 3000, "END\r\n"),
        row(
            format!("get {} after\r\n", keys(600).join(" ")),
            value("after", 0, "ok") + "END\r\n",
        ),
        // 2048 bytes and no newline: the connection is closed without a reply.
        closes(vec![b'x'; 2100]),
        row("get after\r\n", value("after", 0, "ok") + "END\r\n"),
        closes(format!("set {}", "k".repeat(3000))),
    ];
    run_table("errors", &[], &steps);
}

#[test]
fn stats_name_the_counters_clients_read() {
    let mut failures = Vec::new();
    for (threads, server) in [1, 2, 1].into_iter().zip(servers(&[])) {
        let mut client = server.connect();
        let mut problems = Vec::new();
        client.call(&set("a", "1"), b"\r\n");
        client.call(b"get a\r\n", b"END\r\n");
        client.call(b"get b\r\n", b"END\r\n");
        let stats = client.stats("");
        for name in [
            "pid",
            "uptime",
            "time",
            "version",
            "pointer_size",
            "rusage_user",
            "rusage_system",
            "max_connections",
            "curr_connections",
            "total_connections",
            "cmd_get",
            "cmd_set",
            "cmd_flush",
            "cmd_touch",
            "get_hits",
            "get_misses",
            "get_expired",
            "get_flushed",
            "delete_misses",
            "delete_hits",
            "incr_misses",
            "incr_hits",
            "decr_misses",
            "decr_hits",
            "cas_misses",
            "cas_hits",
            "cas_badval",
            "touch_hits",
            "touch_misses",
            "bytes_read",
            "bytes_written",
            "limit_maxbytes",
            "threads",
            "bytes",
            "curr_items",
            "total_items",
            "evictions",
        ] {
            if !stats.iter().any(|(n, _)| n == name) {
                problems.push(format!("stats has no {name}"));
            }
        }
        let stat = |name: &str| {
            stats
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        for (name, want) in [
            ("cmd_get", "2"),
            ("get_hits", "1"),
            ("get_misses", "1"),
            ("cmd_set", "1"),
            ("curr_items", "1"),
            ("limit_maxbytes", "67108864"),
        ] {
            if stat(name) != Some(want) {
                problems.push(format!("{name} is {:?}, not {want}", stat(name)));
            }
        }
        if server.program == support::Program::Ringcache
            && stat("threads") != Some(&threads.to_string())
        {
            problems.push(format!("threads is {:?}, not {threads}", stat("threads")));
        }
        if stat("pid") != Some(&server.pid().to_string()) {
            problems.push(format!("pid is {:?}, not {}", stat("pid"), server.pid()));
        }
        let settings = client.stats("settings");
        for name in [
            "maxbytes",
            "maxconns",
            "tcpport",
            "item_size_max",
            "evictions",
        ] {
            if !settings.iter().any(|(n, _)| n == name) {
                problems.push(format!("stats settings has no {name}"));
            }
        }
        let tcpport = settings
            .iter()
            .find(|(n, _)| n == "tcpport")
            .map(|(_, v)| v.clone());
        if tcpport != Some(server.port.to_string()) {
            problems.push(format!("stats settings tcpport is {tcpport:?}"));
        }
        for which in ["items", "slabs"] {
            let reply = client.call(format!("stats {which}\r\n").as_bytes(), b"END\r\n");
            let text = String::from_utf8_lossy(&reply);
            if !text.lines().all(|l| l.starts_with("STAT ") || l == "END") {
                problems.push(format!(
                    "stats {which} is not STAT lines and END: {}",
                    show(&reply)
                ));
            }
        }
        let reply = client.call(b"stats reset\r\n", b"\r\n");
        if reply != b"RESET\r\n" {
            problems.push(format!("stats reset: {}", show(&reply)));
        }
        let after = client.stats("");
        let get_hits = after
            .iter()
            .find(|(n, _)| n == "get_hits")
            .map(|(_, v)| v.as_str());
        if get_hits != Some("0") {
            problems.push(format!("get_hits after stats reset is {get_hits:?}"));
        }
        let reply = client.call(b"stats bogus\r\n", b"\r\n");
        if reply != b"ERROR\r\n" {
            problems.push(format!("stats bogus: {}", show(&reply)));
        }
        if !problems.is_empty() {
            failures.push(format!("[{}] {}", server.name, problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn http_request_lines_close_the_connection_at_once() {
    let steps = vec![
        closes("GET / HTTP/1.0\r\n"),
        closes("HEAD / HTTP/1.0\r\n"),
        closes("PUT /k HTTP/1.1\r\n"),
        closes("POST /k HTTP/1.1\r\n"),
        closes("DELETE /k HTTP/1.1\r\n"),
        closes("FOO HTTP/2\r\n"),
        // Replies queued from the same read are dropped; the requests took effect.
        closes([&set("h", "1")[..], b"version\r\nGET / HTTP/1.0\r\n"].concat()),
        row("get h\r\n", value("h", 0, "1") + "END\r\n"),
        // Not HTTP to memcached: known commands, one-letter commands, no HTTP/ last.
        row("get HTTP/1.0\r\n", "END\r\n"),
        row("x HTTP/1.0\r\n", "ERROR\r\n"),
        row("gx / HTTP/1.0\r\n", "ERROR\r\n"),
        row("GET /\r\n", "ERROR\r\n"),
        row("GET / http/1.0\r\n", "ERROR\r\n"),
        row("GET / HTTP/1.0 x\r\n", "ERROR\r\n"),
    ];
    run_table("http", &[], &steps);
}

#[test]
fn version_is_memcacheds_release_alone() {
    run_table(
        "version",
        &[],
        &[
            row("version\r\n", "VERSION 1.6.18\r\n"),
            row("version x\r\n", "VERSION 1.6.18\r\n"),
        ],
    );
}

#[test]
fn slabs_automove_answers_as_memcached() {
    let steps = vec![
        row("slabs automove 0\r\n", "OK\r\n"),
        row("slabs automove 1\r\n", "OK\r\n"),
        row("slabs automove 2\r\n", "OK\r\n"),
        row("slabs automove 1 noreply\r\n", ""),
        row("slabs automove ratio 0.8\r\n", "OK\r\n"),
        row("slabs automove ratio x\r\n", "ERROR\r\n"),
        row("slabs automove 3\r\n", "ERROR\r\n"),
        row("slabs automove\r\n", "ERROR\r\n"),
        row(
            "slabs automove invalid\r\n",
            "CLIENT_ERROR bad command line format\r\n",
        ),
        row(
            "slabs automove -1\r\n",
            "CLIENT_ERROR bad command line format\r\n",
        ),
        row("slabs automove x noreply\r\n", ""),
    ];
    run_table("slabs automove", &[], &steps);
}

#[test]
fn meta_cas_of_zero_never_matches_and_an_empty_value_is_not_a_number() {
    let steps = vec![
        row(set("k", "a"), "STORED\r\n"),
        // Twice, so that the item's CAS is above 1 on memcached too.
        row(set("k", "a"), "STORED\r\n"),
        // 1.6.18 takes C0 for no CAS: not a match, and not older for I.
        row("ms k 1 I C0\r\nb\r\n", "EX\r\n"),
        row("ms k 1 C0\r\nb\r\n", "EX\r\n"),
        row("mg k v\r\n", "VA 1\r\na\r\n"),
        // A CAS older than the item's still stores, stale, under I.
        row("ms k 1 I C1\r\nc\r\n", "HD\r\n"),
        row("mg k v\r\n", "VA 1 X W\r\nc\r\n"),
        row(set("z", ""), "STORED\r\n"),
        row(
            "ma z C1\r\n",
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        row(
            "ma z\r\n",
            "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        row(set("z", "x"), "STORED\r\n"),
        row("ma z C1\r\n", "EX\r\n"),
        row(set("z", "5"), "STORED\r\n"),
        row("ma z C1\r\n", "EX\r\n"),
        row("ma z C0 v\r\n", "VA 1\r\n6\r\n"),
    ];
    run_table("meta cas zero", &[], &steps);
}

#[test]
fn flush_all_under_dash_f_is_refused_as_memcached_refuses_it() {
    let steps = vec![
        row(set("f", "1"), "STORED\r\n"),
        row("flush_all\r\n", "CLIENT_ERROR flush_all not allowed\r\n"),
        row("flush_all 10\r\n", "CLIENT_ERROR flush_all not allowed\r\n"),
        row("flush_all noreply\r\n", ""),
        row("flush_all 1 2 3\r\n", "ERROR\r\n"),
        row("get f\r\n", value("f", 0, "1") + "END\r\n"),
    ];
    run_table("flush disabled", &["-F"], &steps);
}

/// The `stats` and `stats settings` keys memcached has and ringcache does not,
/// and ringcache's own: the lists in the README between its markers.
fn documented_stat_keys(list: &str) -> std::collections::BTreeSet<String> {
    support::documented_keys(list).into_iter().collect()
}

fn stat_keys(server: &Server, which: &str) -> std::collections::BTreeSet<String> {
    server
        .connect()
        .stats(which)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

#[test]
fn stats_keys_differ_from_memcacheds_by_the_readmes_lists_alone() {
    let Some(reference) = Server::memcached(&[]) else {
        return;
    };
    let ours = Server::ringcache(&["-t", "2"]);
    for (which, missing, own) in [
        (
            "",
            "stats without a meaning here",
            "stats of ringcache's own",
        ),
        (
            "settings",
            "stats settings without a meaning here",
            "stats settings of ringcache's own",
        ),
    ] {
        let theirs = stat_keys(&reference, which);
        let mine = stat_keys(&ours, which);
        let lacking: std::collections::BTreeSet<String> =
            theirs.difference(&mine).cloned().collect();
        let extra: std::collections::BTreeSet<String> = mine.difference(&theirs).cloned().collect();
        assert_eq!(
            lacking,
            documented_stat_keys(missing),
            "stats {which}: missing"
        );
        assert_eq!(extra, documented_stat_keys(own), "stats {which}: own");
    }
    let mut client = ours.connect();
    let general = client.stats("");
    let get = |name: &str| {
        general
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("version").as_deref(), Some("1.6.18"));
    assert_eq!(
        get("ringcache_version").as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn store_failures_and_me_commands_are_counted_as_memcached_counts_them() {
    let mut failures = Vec::new();
    for server in servers(&[]) {
        let mut client = server.connect();
        // Past the default -I of 1m.
        let big = "x".repeat(1_100_000);
        client.call(&store("set", "a", 0, 0, big.as_bytes(), false), b"\r\n");
        client.call(
            format!("ms a {}\r\n{big}\r\n", big.len()).as_bytes(),
            b"\r\n",
        );
        client.call(b"me a\r\nmn\r\n", b"MN\r\n");
        client.call(b"mg a v\r\nmn\r\n", b"MN\r\n");
        let stats = client.stats("");
        let get = |name: &str| {
            stats
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let got = (
            get("store_too_large"),
            get("store_no_memory"),
            get("cmd_meta"),
        );
        if got != ("2".into(), "0".into(), "1".into()) {
            failures.push(format!("[{}] {got:?}", server.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
