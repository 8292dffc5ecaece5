//! The meta protocol, black box: tables of (request bytes, expected reply bytes)
//! for every meta command, flag and error reply (does I/O: real servers, real
//! sockets).
//!
//! Each table runs against ringcache with `-t 1` and `-t 2` (keys on both shards,
//! so requests are forwarded and their replies spliced back in order), and
//! against memcached 1.6.18, which proves the expected bytes right. Flags that
//! arrived after 1.6.18 (`E`, `x`) are checked against ringcache only, as the
//! 1.6.45 protocol text describes them. In expected replies `{cas}` stands for a
//! CAS number (the last one seen replaces `{cas}` in later requests), `{n}` for a
//! clock-dependent number and `{any}` for the rest of a line.
//!
//! After each request the runner sends `mn\r\n` and reads up to its `MN`, so a
//! missing or extra reply shows up at the row that caused it.

mod support;

use support::table::{self, row, Reference, Step};

/// `ms <key> <len> <flags>\r\n<data>\r\n`.
fn ms(key: &str, flags: &str, data: &str) -> String {
    let sep = if flags.is_empty() { "" } else { " " };
    format!("ms {key} {}{sep}{flags}\r\n{data}\r\n", data.len())
}

/// Runs `steps` on ringcache `-t 1`, `-t 2` and memcached 1.6.18.
fn run_table(table: &str, steps: &[Step]) {
    let servers = table::servers(&[], Reference::Memcached);
    table::run_steps_on(table, servers, &table::MN, steps);
}

/// Runs `steps` on ringcache only: behaviour memcached 1.6.18 does not have.
fn run_ringcache_table(table: &str, steps: &[Step]) {
    let servers = table::servers(&[], Reference::RingcacheOnly);
    table::run_steps_on(table, servers, &table::MN, steps);
}

#[test]
fn mg_returns_each_asked_flag_in_request_order() {
    run_table(
        "mg",
        &[
            row(ms("a", "F5", "hello"), "HD\r\n"),
            row("mg a\r\n", "HD\r\n"),
            row("mg a v\r\n", "VA 5\r\nhello\r\n"),
            row("mg a s f k O123 c\r\n", "HD s5 f5 ka O123 c{cas}\r\n"),
            row("mg a c O9 k f s\r\n", "HD c{cas} O9 ka f5 s5\r\n"),
            row("mg a v t\r\n", "VA 5 t-1\r\nhello\r\n"),
            row("mg a v q\r\n", "VA 5\r\nhello\r\n"),
            row("mg a q\r\n", "HD\r\n"),
            row("mg miss v\r\n", "EN\r\n"),
            row("mg miss v k O1\r\n", "EN kmiss O1\r\n"),
            row("mg miss v q k O1\r\n", ""),
            row(
                "mg a O1234567890123456789012345678901\r\n",
                "HD O1234567890123456789012345678901\r\n",
            ),
            // Extra bytes after a flag that takes no token are ignored.
            row("mg a s1\r\n", "HD s5\r\n"),
            row("mg  a   v \r\n", "VA 5\r\nhello\r\n"),
        ],
    );
}

#[test]
fn mg_h_tells_whether_the_item_was_fetched_before_and_u_does_not_count() {
    run_table(
        "mg h",
        &[
            row(ms("h", "", "x"), "HD\r\n"),
            row("mg h h u\r\n", "HD h0\r\n"),
            row("mg h h\r\n", "HD h0\r\n"),
            row("mg h h\r\n", "HD h1\r\n"),
            row("mg h l\r\n", "HD l{n}\r\n"),
            row(ms("h", "", "y"), "HD\r\n"),
            row("mg h h v\r\n", "VA 1 h0\r\ny\r\n"),
        ],
    );
}

#[test]
fn mg_t_reads_and_t_sets_the_ttl_in_token_order() {
    run_table(
        "mg T",
        &[
            row(ms("t", "T0", "x"), "HD\r\n"),
            row("mg t t\r\n", "HD t-1\r\n"),
            row("mg t t T0\r\n", "HD t-1\r\n"),
            row("mg t T1000 t\r\n", "HD t{n}\r\n"),
            row("mg t T0 t\r\n", "HD t-1\r\n"),
            // A TTL in the past expires the item after this request.
            row("mg t T-1 v\r\n", "VA 1\r\nx\r\n"),
            row("mg t v\r\n", "EN\r\n"),
        ],
    );
}

#[test]
fn ms_modes_compare_and_return_as_memcached() {
    run_table(
        "ms",
        &[
            row(ms("s", "", "ab"), "HD\r\n"),
            row(ms("s", "MA", "cd"), "HD\r\n"),
            row(ms("s", "MP", "zz"), "HD\r\n"),
            row("mg s v\r\n", "VA 6\r\nzzabcd\r\n"),
            row(ms("s", "ME", "no"), "NS\r\n"),
            row(ms("s", "ME c", "no"), "NS c0\r\n"),
            row(ms("s-new", "ME c", "ok"), "HD c{cas}\r\n"),
            row(ms("s-none", "MR", "no"), "NS\r\n"),
            row(ms("s-none", "MA", "no"), "NS\r\n"),
            row(ms("s", "MR F9 T0", "rep"), "HD\r\n"),
            row("mg s v f\r\n", "VA 3 f9\r\nrep\r\n"),
            row(ms("s", "MS c k O5", "set"), "HD c{cas} ks O5\r\n"),
            row(ms("s", "C{cas} c", "cas"), "HD c{cas}\r\n"),
            row(ms("s", "C1 O2", "bad"), "EX O2\r\n"),
            row(ms("s-none", "C1", "x"), "NF\r\n"),
            row(ms("s-none", "MR C1", "x"), "NF\r\n"),
            row(ms("s", "MA C1", "x"), "EX\r\n"),
            row("mg s v\r\n", "VA 3\r\ncas\r\n"),
            row(ms("s", "q", "qq"), ""),
            row(ms("s", "q ME", "qq"), "NS\r\n"),
            row(ms("s", "F4294967297", "f"), "HD\r\n"),
            row("mg s f\r\n", "HD f1\r\n"),
            row(ms("empty", "", ""), "HD\r\n"),
            row("mg empty v s\r\n", "VA 0 s0\r\n\r\n"),
            row("ms data 4\r\n\r\n\r\n\r\n", "HD\r\n"),
            row("mg data v\r\n", "VA 4\r\n\r\n\r\n\r\n"),
        ],
    );
}

#[test]
fn md_deletes_compares_and_invalidates() {
    run_table(
        "md",
        &[
            row("md d\r\n", "NF\r\n"),
            row("md d q k O3\r\n", "NF kd O3\r\n"),
            row(ms("d", "", "x"), "HD\r\n"),
            row("md d k O3\r\n", "HD kd O3\r\n"),
            row("mg d\r\n", "EN\r\n"),
            row(ms("d", "c", "x"), "HD c{cas}\r\n"),
            row("md d C1\r\n", "EX\r\n"),
            row("md d q C1\r\n", "EX\r\n"),
            row("md d q C{cas}\r\n", ""),
            row("mg d\r\n", "EN\r\n"),
            row(ms("d", "", "x"), "HD\r\n"),
            // Flags md has no use for are accepted.
            row("md d v s t f\r\n", "HD\r\n"),
        ],
    );
}

#[test]
fn ma_counts_vivifies_and_compares() {
    run_table(
        "ma",
        &[
            row("ma n\r\n", "NF\r\n"),
            row("ma n q\r\n", "NF\r\n"),
            row("ma n k O1\r\n", "NF kn O1\r\n"),
            row("ma n N0 J10 v\r\n", "VA 2\r\n10\r\n"),
            row("ma n v t\r\n", "VA 2 t-1\r\n11\r\n"),
            row("ma n\r\n", "HD\r\n"),
            row("ma n MD D3 v\r\n", "VA 1\r\n9\r\n"),
            row("ma n M- D30 v\r\n", "VA 1\r\n0\r\n"),
            row("ma n M+ D5 q v\r\n", ""),
            row("ma n MI v c\r\n", "VA 1 c{cas}\r\n6\r\n"),
            row("ma n C{cas} v\r\n", "VA 1\r\n7\r\n"),
            row("ma n C1 v\r\n", "EX\r\n"),
            row("ma n C0 v\r\n", "VA 1\r\n8\r\n"),
            row("ma n D18446744073709551615 v\r\n", "VA 1\r\n7\r\n"),
            // Arithmetic in place pads a shorter result with spaces.
            row("mg n v\r\n", "VA 2\r\n7 \r\n"),
            row(
                "ma big N0 J18446744073709551615 v\r\n",
                "VA 20\r\n18446744073709551615\r\n",
            ),
            row("ma big v\r\n", "VA 1\r\n0\r\n"),
            row("ma m N0 q v\r\n", "VA 1\r\n0\r\n"),
            row("ma m q v\r\n", ""),
            row("ma m T0 t\r\n", "HD t-1\r\n"),
            row(ms("str", "", "ab"), "HD\r\n"),
            row(
                "ma str\r\n",
                "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            ),
            row(
                "ma str q\r\n",
                "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
            ),
        ],
    );
}

#[test]
fn stale_while_revalidate_hands_out_one_win() {
    run_table(
        "stale",
        &[
            row(ms("sw", "T1000", "old"), "HD\r\n"),
            row("md sw I T30\r\n", "HD\r\n"),
            row("mg sw v c\r\n", "VA 3 c{cas} X W\r\nold\r\n"),
            row("mg sw v\r\n", "VA 3 Z X\r\nold\r\n"),
            row("mg sw\r\n", "HD Z X\r\n"),
            // An older CAS with I stores, still stale, the token still out.
            row(ms("sw", "I C1", "mid"), "HD\r\n"),
            row("mg sw v\r\n", "VA 3 Z X\r\nmid\r\n"),
            row(ms("sw", "I C99999999999", "no"), "EX\r\n"),
            // A second invalidation takes the token back.
            row("md sw I\r\n", "HD\r\n"),
            row("mg sw\r\n", "HD X W\r\n"),
            row("mg sw\r\n", "HD Z X\r\n"),
            row(ms("sw", "", "fresh"), "HD\r\n"),
            row("mg sw v\r\n", "VA 5\r\nfresh\r\n"),
            // I without C is a plain set.
            row(ms("sw", "I", "plain"), "HD\r\n"),
            row("mg sw v\r\n", "VA 5\r\nplain\r\n"),
            row("md nope I\r\n", "NF\r\n"),
        ],
    );
}

#[test]
fn vivify_on_miss_and_recache_win_once() {
    run_table(
        "vivify",
        &[
            row("mg v N30 v s f\r\n", "VA 0 s0 f0 W\r\n\r\n"),
            row("mg v N30 v\r\n", "VA 0 Z\r\n\r\n"),
            row("mg v\r\n", "HD Z\r\n"),
            row("mg w q N0 k v\r\n", "VA 0 kw W\r\n\r\n"),
            row(ms("v", "T100", "ok"), "HD\r\n"),
            row("mg v v N30\r\n", "VA 2\r\nok\r\n"),
            row("mg v R30 v\r\n", "VA 2\r\nok\r\n"),
            row("mg v R200 v\r\n", "VA 2 W\r\nok\r\n"),
            row("mg v R200 v\r\n", "VA 2 Z\r\nok\r\n"),
            row(ms("never", "", "x"), "HD\r\n"),
            row("mg never R200\r\n", "HD\r\n"),
        ],
    );
}

#[test]
fn base64_keys_are_decoded_stored_and_shown_in_base64() {
    run_table(
        "base64",
        &[
            row(ms("Zm9v", "b", "bar"), "HD\r\n"),
            row("mg foo v k\r\n", "VA 3 kZm9v b\r\nbar\r\n"),
            row("mg Zm9v b v k\r\n", "VA 3 kZm9v b\r\nbar\r\n"),
            row("mg Zm9v b k v\r\n", "VA 3 kZm9v b\r\nbar\r\n"),
            row(ms("Zm9v", "b k O1", "baz"), "HD kZm9v b O1\r\n"),
            row(
                "me Zm9v b\r\n",
                "ME Zm9v exp=-1 la={n} cas={cas} fetch=no cls=1 size=65\r\n",
            ),
            row("md Zm9v b k q\r\n", ""),
            row("md Zm9v b k\r\n", "NF kZm9v b\r\n"),
            row("mg Zg== b k\r\n", "EN kZg== b\r\n"),
            row("mg Zm9v= b v\r\n", "CLIENT_ERROR error decoding key\r\n"),
            row("mg Zm9 b v\r\n", "CLIENT_ERROR error decoding key\r\n"),
            row("me Zm9 b\r\n", "CLIENT_ERROR bad command line format\r\n"),
        ],
    );
}

#[test]
fn me_and_mn_answer_as_memcached() {
    run_table(
        "me mn",
        &[
            row(ms("foo", "F5", "hi"), "HD\r\n"),
            row(
                "me foo\r\n",
                "ME foo exp=-1 la={n} cas={cas} fetch=no cls=1 size=68\r\n",
            ),
            row("mg foo\r\n", "HD\r\n"),
            row(
                "me foo\r\n",
                "ME foo exp=-1 la={n} cas={cas} fetch=yes cls=1 size=68\r\n",
            ),
            row("me miss\r\n", "EN\r\n"),
            row("me\r\n", "CLIENT_ERROR bad command line format\r\n"),
            row("mn\r\n", "MN\r\n"),
            row("mn extra tokens\r\n", "MN\r\n"),
        ],
    );
}

#[test]
fn quiet_requests_pipelined_answer_in_order_and_mn_closes_the_batch() {
    let mut batch = String::new();
    for i in 0..20 {
        batch += &ms(&format!("k{i}"), "q", &format!("v{i}"));
    }
    let mut gets = String::new();
    let mut expected = String::new();
    for i in 0..20 {
        gets += &format!("mg k{i} v k q\r\nmg miss{i} v q\r\n");
        expected += &format!("VA {} kk{i}\r\nv{i}\r\n", format!("v{i}").len());
    }
    gets += "md k3 q\r\nmd k3 q\r\nmg k3 v q\r\nms k3 1 q ME\r\nx\r\nmn\r\n";
    expected += "NF\r\nMN\r\n";
    run_table("quiet", &[row(batch, ""), row(gets, expected)]);
}

#[test]
fn bad_meta_requests_get_memcacheds_errors() {
    run_table(
        "errors",
        &[
            row("mg\r\n", "ERROR\r\n"),
            row("ms\r\n", "ERROR\r\n"),
            row("md\r\n", "ERROR\r\n"),
            row("ma\r\n", "ERROR\r\n"),
            row("mx a\r\n", "ERROR\r\n"),
            row("mg a v v\r\n", "CLIENT_ERROR duplicate flag\r\n"),
            row("mg a zz\r\n", "CLIENT_ERROR invalid flag\r\n"),
            row(
                "mg a Tx\r\n",
                "CLIENT_ERROR bad token in command line format\r\n",
            ),
            row(
                "mg a N\r\n",
                "CLIENT_ERROR bad token in command line format\r\n",
            ),
            row(
                "mg a M\r\n",
                "CLIENT_ERROR incorrect length for M token\r\n",
            ),
            row(
                "mg a O123456789012345678901234567890123\r\n",
                "CLIENT_ERROR opaque token too long\r\n",
            ),
            row(
                "mg a q O123456789012345678901234567890123\r\n",
                "CLIENT_ERROR opaque token too long\r\n",
            ),
            row(
                "mg a b c d e f g h i j k l m n o p q r s\r\n",
                "CLIENT_ERROR options flags are too long\r\n",
            ),
            row(
                "md a b c d e f g h i j k l m n o p q r s\r\n",
                "CLIENT_ERROR options flags too long\r\n",
            ),
            row("md a zz\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
            row("md a v v\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
            row("ma a Dx\r\n", "CLIENT_ERROR invalid or duplicate flag\r\n"),
            row(
                "ma a MX\r\n",
                "CLIENT_ERROR invalid mode for ma M token\r\n",
            ),
            row(
                format!("mg {}\r\n", "k".repeat(251)),
                "CLIENT_ERROR bad command line format\r\n",
            ),
            row(format!("mg {} v\r\n", "k".repeat(250)), "EN\r\n"),
            // ms: an error before the length is read leaves the data to be read
            // as a command; after it, the data block is swallowed.
            row("ms a\r\n", "CLIENT_ERROR bad command line format\r\n"),
            row(
                "ms a x\r\nmn\r\n",
                "CLIENT_ERROR bad command line format\r\nMN\r\n",
            ),
            row("ms a -1\r\n", "CLIENT_ERROR bad command line format\r\n"),
            row("ms a 2 Z\r\nab\r\n", "CLIENT_ERROR invalid flag\r\n"),
            row(
                "ms a 2 MX\r\nab\r\n",
                "CLIENT_ERROR invalid mode for ms M token\r\n",
            ),
            row(
                "ms a 2 MEE\r\nab\r\n",
                "CLIENT_ERROR incorrect length for M token\r\n",
            ),
            row(
                "ms a 2 F-1\r\nab\r\n",
                "CLIENT_ERROR bad command line format\r\n",
            ),
            row(
                "ms a 2 Tx q\r\nab\r\n",
                "CLIENT_ERROR bad token in command line format\r\n",
            ),
            row(
                "ms a 2 q\r\nabc\r\n",
                "CLIENT_ERROR bad data chunk\r\nERROR\r\n",
            ),
            row(
                "ms a 2 Cx\r\nab\r\n",
                "CLIENT_ERROR bad token in command line format\r\n",
            ),
            row("mg a v\r\n", "EN\r\n"),
        ],
    );
}

#[test]
fn an_oversized_ms_is_refused_swallowed_and_drops_the_old_value() {
    let big = "x".repeat(1024 * 1024 + 1);
    run_table(
        "too large",
        &[
            row(ms("big", "", "old"), "HD\r\n"),
            row(
                ms("big", "q", &big),
                "SERVER_ERROR object too large for cache\r\n",
            ),
            row("mg big v\r\n", "EN\r\n"),
        ],
    );
}

/// `E` (explicit CAS) and `x` (remove the value, keep the item), as the 1.6.45
/// protocol text describes them; memcached 1.6.18 refuses both flags.
#[test]
fn newer_flags_e_and_x_work_as_the_current_spec_says() {
    run_ringcache_table(
        "E and x",
        &[
            row(ms("e", "E777 c", "ab"), "HD c777\r\n"),
            row("mg e c v\r\n", "VA 2 c777\r\nab\r\n"),
            row(ms("e", "C777 E778 c", "cd"), "HD c778\r\n"),
            row(ms("e", "C777 E779", "ef"), "EX\r\n"),
            // x: the value goes, the item (and its CAS) stays; F and T set its
            // flags and TTL.
            row("md e x\r\n", "HD\r\n"),
            row("mg e c v f t\r\n", "VA 0 c778 f0 t-1\r\n\r\n"),
            row(ms("e", "F3", "gh"), "HD\r\n"),
            row("md e x F9 E900\r\n", "HD\r\n"),
            row("mg e c v f\r\n", "VA 0 c900 f9\r\n\r\n"),
            // x with I leaves a stale tombstone.
            row(ms("e", "", "ij"), "HD\r\n"),
            row("md e x I E901\r\n", "HD\r\n"),
            row("mg e c v\r\n", "VA 0 c901 X W\r\n\r\n"),
            row("md e I E902 q\r\n", ""),
            row("mg e c\r\n", "HD c902 X W\r\n"),
            row("md nope x\r\n", "NF\r\n"),
            row("ma n N0 E50 c v\r\n", "VA 1 c50\r\n0\r\n"),
            row("ma n E60 c v\r\n", "VA 1 c60\r\n1\r\n"),
            row("mg viv N30 E42 c\r\n", "HD c42 W\r\n"),
            row(
                "mg e Ex\r\n",
                "CLIENT_ERROR bad token in command line format\r\n",
            ),
        ],
    );
}
