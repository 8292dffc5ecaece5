//! A parsed request carried beside a copy of the bytes it was parsed from, so
//! that whoever holds the copy reads the same request without parsing it again
//! (pure).
//!
//! A request borrows its key, data and tokens from the read buffer. To carry it
//! elsewhere, each borrowed slice is recorded as a [`Span`] of the request's
//! bytes and the request itself is kept with empty slices (its *shape*); reading
//! it back puts each span of the copy where the slice was. Nothing allocates:
//! a carried request is a plain value.

/// The most slices any request borrows (a meta request: key, flag tokens, data).
pub const SLICES_MAX: usize = 3;

/// A parsed request whose borrowed slices can be replaced, one by one, in a
/// fixed order: that order is how a [`Carried`] request finds its spans again.
pub trait Slices<'a> {
    /// The same request borrowing for `'b` instead.
    type With<'b>;

    /// The request with each borrowed slice `s` replaced by `f(s)`, visiting
    /// at most [`SLICES_MAX`] slices, always in the same order for one variant.
    fn map_slices<'b>(&self, f: impl FnMut(&'a [u8]) -> &'b [u8]) -> Self::With<'b>;
}

/// Where one borrowed slice lies in a request's bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// Where `slice` lies in `raw`. An empty slice may come from anywhere (a
    /// literal `b""`), so it is recorded as empty.
    ///
    /// # Panics
    /// If a non-empty `slice` is not inside `raw`: the parser borrowed it from
    /// elsewhere, a bug.
    fn within(raw: &[u8], slice: &[u8]) -> Span {
        if slice.is_empty() {
            return Span::default();
        }
        let offset = (slice.as_ptr() as usize).wrapping_sub(raw.as_ptr() as usize);
        assert!(
            offset <= raw.len() && slice.len() <= raw.len() - offset,
            "a parsed request borrows bytes from outside its own"
        );
        Span {
            start: offset as u32,
            len: slice.len() as u32,
        }
    }

    fn of<'b>(&self, raw: &'b [u8]) -> &'b [u8] {
        &raw[self.start as usize..(self.start + self.len) as usize]
    }
}

/// A parsed request `R` (borrowing nothing: its slices are empty) and where
/// its slices lie in its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Carried<R> {
    shape: R,
    spans: [Span; SLICES_MAX],
}

impl<R> Carried<R> {
    /// Carries `req`, parsed from exactly `raw`.
    pub fn new<'a, P>(req: &P, raw: &'a [u8]) -> Carried<R>
    where
        P: Slices<'a, With<'static> = R>,
    {
        let mut spans = [Span::default(); SLICES_MAX];
        let mut n = 0;
        let shape = req.map_slices(|slice| {
            spans[n] = Span::within(raw, slice);
            n += 1;
            &[]
        });
        Carried { shape, spans }
    }

    /// The request again, borrowing from `raw`: a copy of the bytes it was
    /// carried with.
    ///
    /// # Panics
    /// If `raw` is shorter than those bytes.
    pub fn read<'b>(&self, raw: &'b [u8]) -> R::With<'b>
    where
        R: Slices<'static>,
    {
        let mut spans = self.spans.iter();
        self.shape.map_slices(|_| {
            spans
                .next()
                .expect("a request reads back the slices it was carried with")
                .of(raw)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{binary, text, ParseLimits};

    /// Every request, carried with a copy of its bytes, reads back equal to
    /// the same bytes parsed there.
    fn carries_as_parsed(wire: &[u8]) {
        let limits = ParseLimits::default();
        let (req, used) = text::parse(wire, &limits).expect("parses");
        let carried: Carried<text::Request<'static>> = Carried::new(&req, &wire[..used]);
        let copy = wire[..used].to_vec();
        let (again, _) = text::parse(&copy, &limits).expect("parses");
        assert_eq!(carried.read(&copy), again);
    }

    #[test]
    fn a_carried_text_request_reads_back_as_it_parses() {
        for wire in [
            &b"set k 5 0 3\r\nabc\r\n"[..],
            b"cas key 1 2 3 77 noreply\r\nxyz\r\n",
            b"append k 0 0 1\r\nz\r\n",
            b"delete k\r\n",
            b"incr k 9\r\n",
            b"touch k 10\r\n",
            b"get a b c\r\n",
            b"mg k v t f c q O123\r\n",
            b"mg a2V5 b v\r\n",
            b"ms k 3 T10 F5 c\r\nabc\r\n",
            b"md k q\r\n",
            b"ma k D5 N0 J1\r\n",
            b"mn\r\n",
            b"stats items\r\n",
            b"watch fetchers\r\n",
        ] {
            carries_as_parsed(wire);
        }
    }

    #[test]
    fn a_carried_base64_meta_key_is_not_decoded_again() {
        let wire = b"mg a2V5 b v\r\n";
        let (req, used) = text::parse(wire, &ParseLimits::default()).expect("parses");
        let carried: Carried<text::Request<'static>> = Carried::new(&req, &wire[..used]);
        // The encoded key changed in the copy; the decoded key was carried.
        let mut copy = wire.to_vec();
        copy[3] = b'Z';
        match carried.read(&copy) {
            text::Request::Meta(meta) => assert_eq!(meta.key.bytes(), b"key"),
            other => panic!("not a meta request: {other:?}"),
        }
    }

    #[test]
    fn a_carried_binary_request_reads_back_as_it_parses() {
        let limits = ParseLimits::default();
        // SET key "k", value "abc", flags 5, exptime 0.
        let mut wire = vec![0x80, 0x01, 0, 1, 8, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 7];
        wire.extend_from_slice(&[0; 8]);
        wire.extend_from_slice(&[0, 0, 0, 5, 0, 0, 0, 0]);
        wire.extend_from_slice(b"kabc");
        let (req, used) = binary::parse(&wire, &limits).expect("parses");
        let carried: Carried<binary::BinRequest<'static>> = Carried::new(&req, &wire[..used]);
        let copy = wire[..used].to_vec();
        let (again, _) = binary::parse(&copy, &limits).expect("parses");
        assert_eq!(carried.read(&copy), again);
        assert!(matches!(
            again.command,
            binary::Command::Store { value: b"abc", .. }
        ));
    }

    #[test]
    #[should_panic(expected = "from outside its own")]
    fn a_slice_from_elsewhere_is_a_bug() {
        let elsewhere = b"key".to_vec();
        let req = text::Request::Delete {
            key: &elsewhere,
            reply: text::Reply::Wanted,
        };
        let _: Carried<text::Request<'static>> = Carried::new(&req, b"delete key\r\n");
    }
}
