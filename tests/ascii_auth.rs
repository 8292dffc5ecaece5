//! `-Y FILE`: memcached's ASCII authentication. Each table is one connection's
//! conversation, request by request, run against ringcache -Y and the real
//! `memcached -Y` with the same auth file; both must answer byte for byte as
//! the table says.

mod support;

use std::time::Duration;
use support::{Client, Server};

/// How long a reply that is not expected is waited for.
const QUIET: Duration = Duration::from_millis(300);

/// What an exchange expects after its request.
enum Then {
    /// Exactly these bytes (ending in `\r\n`).
    Reply(&'static [u8]),
    /// Nothing, and the connection closed.
    Closed,
}
use Then::*;

type Conversation = &'static [(&'static [u8], Then)];

const UNAUTH: Then = Reply(b"CLIENT_ERROR unauthenticated\r\n");

const CONVERSATIONS: &[(&str, Conversation)] = &[
    (
        "every command before authenticating is refused, set included, and stores nothing",
        &[
            (b"get greeting\r\n", UNAUTH),
            (b"version\r\n", UNAUTH),
            (b"stats\r\n", UNAUTH),
            (b"quit\r\n", UNAUTH),
            (b"mg greeting v\r\n", UNAUTH),
            (b"add k 0 0 12\r\n", UNAUTH),
            (b"set k 0 0 x\r\n", UNAUTH),
            (b"set k\r\n", UNAUTH),
            (b"\r\n", UNAUTH),
        ],
    ),
    (
        "a right token authenticates and the connection then serves",
        &[
            (b"set k 0 0 12\r\nalice secret\r\n", Reply(b"STORED\r\n")),
            (b"set greeting 0 0 5\r\nhello\r\n", Reply(b"STORED\r\n")),
            (
                b"get greeting\r\n",
                Reply(b"VALUE greeting 0 5\r\nhello\r\nEND\r\n"),
            ),
            (b"get k\r\n", Reply(b"END\r\n")),
        ],
    ),
    (
        "a wrong token fails and a later right one still authenticates",
        &[
            (
                b"set k 0 0 12\r\nalice wrongg\r\n",
                Reply(b"CLIENT_ERROR authentication failure\r\n"),
            ),
            (b"get greeting\r\n", UNAUTH),
            (b"set k 0 0 7\r\nbob pw2\r\n", Reply(b"STORED\r\n")),
            (b"delete nothing\r\n", Reply(b"NOT_FOUND\r\n")),
        ],
    ),
    (
        "a token of one word is a bad format",
        &[
            (
                b"set k 0 0 5\r\nalice\r\n",
                Reply(b"CLIENT_ERROR bad authentication token format\r\n"),
            ),
            (
                b"set k 0 0 0\r\n\r\n",
                Reply(b"CLIENT_ERROR bad authentication token format\r\n"),
            ),
            (b"get k\r\n", UNAUTH),
        ],
    ),
    (
        "spaces around the words and words after the password are ignored",
        &[
            (
                b"set k 0 0 20\r\n  alice secret extra\r\n",
                Reply(b"STORED\r\n"),
            ),
            (b"version\r\n", Reply(b"VERSION ")),
        ],
    ),
    (
        "noreply on the authenticating set is answered anyway",
        &[(b"set k 0 0 7 noreply\r\nbob pw2\r\n", Reply(b"STORED\r\n"))],
    ),
    (
        "-Y makes every connection text: a binary NOOP is a line (its opcode is a newline)",
        &[(b"\x80\x0a", UNAUTH)],
    ),
    (
        "a command line too long closes the connection",
        &[(&[b'x'; 4096], Closed)],
    ),
];

const AUTH_FILE: &str = "alice:secret\nbob:pw2\n";

fn run_conversation(server: &Server, name: &str, conversation: Conversation) {
    let mut client: Client = server.connect();
    for (request, then) in conversation {
        client.send(request);
        match then {
            Reply(expected) => {
                // A VERSION line is matched on its start; the rest differs.
                let got = if expected.ends_with(b" ") {
                    client
                        .read_until(b"\r\n", support::REPLY_TIMEOUT)
                        .map(|line| line[..expected.len().min(line.len())].to_vec())
                } else {
                    client.read_exact_n(expected.len(), support::REPLY_TIMEOUT)
                }
                .unwrap_or_else(|f| panic!("{name}: {}: {f:?}", support::show(request)));
                assert_eq!(
                    support::show(&got),
                    support::show(expected),
                    "{name} ({:?}): after {}",
                    server.program,
                    support::show(request)
                );
                let extra = client.read_available(QUIET);
                let extra = if expected.ends_with(b" ") {
                    Vec::new()
                } else {
                    extra
                };
                assert!(
                    extra.is_empty(),
                    "{name} ({:?}): more than one reply to {}: {}",
                    server.program,
                    support::show(request),
                    support::show(&extra)
                );
            }
            Closed => {
                assert!(
                    client.is_closed_within(support::REPLY_TIMEOUT),
                    "{name} ({:?}): {} left the connection open",
                    server.program,
                    support::show(request)
                );
            }
        }
    }
}

#[test]
fn ascii_authentication_answers_as_memcached_does() {
    let dir = std::env::temp_dir().join(format!("ringcache-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("auth");
    std::fs::write(&file, AUTH_FILE).unwrap();
    let file = file.display().to_string();
    let mut servers = vec![Server::ringcache(&["-t", "2", "-Y", &file])];
    servers.extend(Server::memcached(&["-Y", &file]));
    for server in &servers {
        for (name, conversation) in CONVERSATIONS {
            run_conversation(server, name, conversation);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_auth_file_without_users_stops_the_start() {
    let dir = std::env::temp_dir().join(format!("ringcache-auth-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("auth");
    std::fs::write(&file, "no colon here\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringcache"))
        .args(["-p", &support::free_port().to_string(), "-Y"])
        .arg(&file)
        .output()
        .expect("run ringcache");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not user:password"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
