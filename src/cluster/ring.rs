//! A ketama-compatible consistent-hash ring (pure).
//!
//! Built the way libmemcached and spymemcached build theirs: for each server name
//! `"host:port"`, for `i` in `0..points/4`, MD5(`"host:port-i"`) gives four 32-bit
//! little-endian points. Each "server" is one shard endpoint, so a ketama client
//! given the shard endpoints sends every key straight to its owner. A key's point
//! is the first four bytes of MD5(key), little-endian; its owner is the server of
//! the first ring point at or after it, wrapping to the first point.

use md5::{Digest, Md5};

/// Ring points per server: libmemcached's and spymemcached's default.
pub const POINTS_PER_SERVER_DEFAULT: usize = 160;

/// Which shard of which node owns a ring point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Owner {
    pub node: u32,
    pub shard: u32,
}

/// One "server" on the ring: an endpoint name and the shard behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    /// The ketama name of the endpoint (see [`ketama_name`]).
    pub name: String,
    pub owner: Owner,
}

/// Sorted ring points, each owned by one (node, shard).
#[derive(Clone, Debug)]
pub struct Ring {
    points: Vec<(u32, Owner)>,
}

/// memcached's default port: libmemcached leaves it out of a server's ketama name.
pub const KETAMA_DEFAULT_PORT: u16 = 11211;

/// The name a ketama client gives the server at `host:port` when it hashes its
/// points: `host:port`, or `host` alone on the default port (libmemcached's rule).
pub fn ketama_name(host: &str, port: u16) -> String {
    if port == KETAMA_DEFAULT_PORT {
        host.to_string()
    } else {
        format!("{host}:{port}")
    }
}

/// The ketama hash of a key: the point it lands on.
pub fn key_point(key: &[u8]) -> u32 {
    let digest = Md5::digest(key);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

impl Ring {
    /// Builds the ring from its servers, `points_per_server` points each (a multiple of 4).
    pub fn new(servers: &[Server], points_per_server: usize) -> Ring {
        assert!(!servers.is_empty(), "a ring needs at least one server");
        assert!(points_per_server >= 4 && points_per_server.is_multiple_of(4));
        let mut points = Vec::with_capacity(servers.len() * points_per_server);
        for server in servers {
            for i in 0..points_per_server / 4 {
                let digest = Md5::digest(format!("{}-{}", server.name, i).as_bytes());
                for h in 0..4 {
                    let b = &digest[h * 4..h * 4 + 4];
                    points.push((u32::from_le_bytes([b[0], b[1], b[2], b[3]]), server.owner));
                }
            }
        }
        // Ties are broken by owner so every node builds the same ring.
        points.sort_unstable();
        Ring { points }
    }

    /// A ring of one node with `shards` shards, named by their endpoints.
    pub fn single_node(endpoints: &[String], points_per_server: usize) -> Ring {
        let servers: Vec<Server> = endpoints
            .iter()
            .enumerate()
            .map(|(shard, name)| Server {
                name: name.clone(),
                owner: Owner {
                    node: 0,
                    shard: shard as u32,
                },
            })
            .collect();
        Ring::new(&servers, points_per_server)
    }

    /// The index of the first point at or after `point`, wrapping around.
    fn first_at_or_after(&self, point: u32) -> usize {
        let idx = self.points.partition_point(|&(p, _)| p < point);
        if idx == self.points.len() {
            0
        } else {
            idx
        }
    }

    /// The owner of the first point at or after `point`, wrapping around.
    pub fn owner_of_point(&self, point: u32) -> Owner {
        self.points[self.first_at_or_after(point)].1
    }

    /// The owners of every ring point, clockwise from the first at or after
    /// `point` (that one is [`Ring::owner_of_point`]), each point once, wrapping.
    /// Replica placement walks this until it has met R distinct nodes.
    pub fn clockwise_from(&self, point: u32) -> impl Iterator<Item = Owner> + '_ {
        let start = self.first_at_or_after(point);
        self.points[start..]
            .iter()
            .chain(&self.points[..start])
            .map(|&(_, owner)| owner)
    }

    pub fn owner(&self, key: &[u8]) -> Owner {
        self.owner_of_point(key_point(key))
    }

    pub fn points(&self) -> &[(u32, Owner)] {
        &self.points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(n: usize) -> Ring {
        let names: Vec<String> = (0..n).map(|i| format!("127.0.0.1:{}", 20000 + i)).collect();
        Ring::single_node(&names, POINTS_PER_SERVER_DEFAULT)
    }

    #[test]
    fn every_shard_owns_a_share_of_keys() {
        let ring = ring(4);
        let mut counts = [0usize; 4];
        for i in 0..40_000 {
            counts[ring.owner(format!("key:{i}").as_bytes()).shard as usize] += 1;
        }
        for c in counts {
            assert!(c > 7_000, "unbalanced ring: {counts:?}");
        }
    }

    #[test]
    fn a_point_past_the_last_wraps_to_the_first() {
        let ring = ring(2);
        let first = ring.points()[0].1;
        assert_eq!(ring.owner_of_point(u32::MAX), first);
        assert_eq!(ring.owner_of_point(0), first);
    }

    #[test]
    fn clockwise_walk_starts_at_the_owner_and_meets_every_point_once() {
        let ring = ring(3);
        for point in [
            0,
            ring.points()[5].0,
            ring.points()[5].0.wrapping_add(1),
            u32::MAX,
        ] {
            let walk: Vec<Owner> = ring.clockwise_from(point).collect();
            assert_eq!(walk.len(), ring.points().len());
            assert_eq!(walk[0], ring.owner_of_point(point));
        }
        let after_last = ring.points().last().unwrap().0.wrapping_add(1);
        let walk: Vec<Owner> = ring.clockwise_from(after_last).collect();
        let all: Vec<Owner> = ring.points().iter().map(|&(_, o)| o).collect();
        assert_eq!(walk, all, "past the last point the walk wraps to the first");
    }

    #[test]
    fn key_point_is_md5_little_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(key_point(b""), u32::from_le_bytes([0xd4, 0x1d, 0x8c, 0xd9]));
    }
}
