//! `-Z` and memcached's `-o ssl_*` options, read into the [`TlsSettings`] the
//! runtime builds its TLS server from (pure: parsing and validation only).

/// `-Z` with its `-o ssl_*` options: what the runtime needs to build a TLS
/// server (reading the files is its job).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// `ssl_chain_cert`: the server's certificate chain, PEM.
    pub chain_cert: std::path::PathBuf,
    /// `ssl_key`: its private key, PEM; by default read from the chain file.
    pub key: std::path::PathBuf,
    /// `ssl_ca_cert`: the CAs whose client certificates are accepted, PEM.
    pub ca_cert: Option<std::path::PathBuf>,
    pub verify_mode: VerifyMode,
    pub min_version: TlsVersion,
    /// `ssl_session_cache`: keep sessions so clients may resume them.
    pub session_cache: SessionCache,
}

/// `ssl_verify_mode`: memcached's (OpenSSL's) client certificate checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerifyMode {
    /// 0: no client certificate is asked for.
    None,
    /// 1: one is asked for and checked if sent; a client without one is served.
    Request,
    /// 2: a client without a valid certificate is refused.
    Require,
    /// 3: as 2, checked once per connection (TLS 1.3 never renegotiates, so
    /// this is 2).
    Once,
}

/// `ssl_min_version`: the oldest TLS version a client may speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Whether TLS sessions are kept for resumption (`ssl_session_cache`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionCache {
    Off,
    On,
}

/// The `-o ssl_*` options as they are read, before `-Z` decides whether they apply.
#[derive(Default)]
pub(super) struct SslOptions {
    chain_cert: Option<String>,
    key: Option<String>,
    ca_cert: Option<String>,
    verify_mode: Option<VerifyMode>,
    min_version: Option<TlsVersion>,
    session_cache: bool,
    /// The options given, for the note when `-Z` is absent.
    given: Vec<String>,
}

/// Takes one `-o ssl_*` option into `ssl`: `Ok(Some(note))` when it is accepted
/// but does not apply, `Err` when it is malformed or unknown.
pub(super) fn ssl_option(option: &str, ssl: &mut SslOptions) -> Result<Option<String>, String> {
    let (name, value) = match option.split_once('=') {
        Some((name, value)) => (name, Some(value)),
        None => (option, None),
    };
    let file = || -> Result<String, String> {
        value
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("-o {name}: missing file name"))
    };
    let note = |why: &str| Ok(Some(format!("-o {option}: {why}; ignored")));
    ssl.given.push(option.to_string());
    match name {
        "ssl_chain_cert" => ssl.chain_cert = Some(file()?),
        "ssl_key" => ssl.key = Some(file()?),
        "ssl_ca_cert" => ssl.ca_cert = Some(file()?),
        "ssl_verify_mode" => {
            ssl.verify_mode = Some(match value {
                Some("0") => VerifyMode::None,
                Some("1") => VerifyMode::Request,
                Some("2") => VerifyMode::Require,
                Some("3") => VerifyMode::Once,
                _ => return Err(format!("-o {option}: must be 0, 1, 2 or 3")),
            })
        }
        "ssl_min_version" => match value {
            Some("tlsv1.2") => ssl.min_version = Some(TlsVersion::Tls12),
            Some("tlsv1.3") => ssl.min_version = Some(TlsVersion::Tls13),
            Some("tlsv1" | "tlsv1.1") => {
                return note("TLS 1.0 and 1.1 are not spoken; the oldest served is tlsv1.2")
            }
            _ => {
                return Err(format!(
                    "-o {option}: must be tlsv1, tlsv1.1, tlsv1.2 or tlsv1.3"
                ))
            }
        },
        "ssl_keyformat" => match value {
            // OpenSSL's SSL_FILETYPE_PEM is 1.
            Some("1" | "PEM" | "pem") => {}
            _ => return Err(format!("-o {option}: only PEM keys (ssl_keyformat=1) are read")),
        },
        "ssl_session_cache" => ssl.session_cache = true,
        "ssl_ciphers" => {
            return note("the cipher suites are rustls's own: TLS 1.3's, and TLS 1.2's ECDHE with AES-GCM or ChaCha20-Poly1305")
        }
        "ssl_wbuf_size" => {
            value
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| format!("-o {option}: must be a number of kilobytes"))?;
            return note("replies are encrypted from the connection's own output buffer");
        }
        "ssl_kernel_tls" => return note("TLS runs in the process, not in the kernel"),
        _ => return Err(format!("-o {option}: Illegal suboption")),
    }
    Ok(None)
}

impl SslOptions {
    /// The TLS settings `-Z` asks for, or `None` without it.
    pub(super) fn settings(
        self,
        enable_ssl: bool,
        notes: &mut Vec<String>,
    ) -> Result<Option<TlsSettings>, String> {
        if !enable_ssl {
            for option in &self.given {
                notes.push(format!("-o {option}: applies only with -Z; ignored"));
            }
            return Ok(None);
        }
        let chain_cert = self.chain_cert.ok_or(
            "-Z: a certificate is needed: -o ssl_chain_cert=FILE (and ssl_key=FILE if the key is apart)",
        )?;
        let verify_mode = self.verify_mode.unwrap_or(VerifyMode::None);
        if verify_mode != VerifyMode::None && self.ca_cert.is_none() {
            return Err(
                "-o ssl_verify_mode: checking client certificates needs the CAs that sign them: -o ssl_ca_cert=FILE"
                    .into(),
            );
        }
        Ok(Some(TlsSettings {
            key: self.key.unwrap_or_else(|| chain_cert.clone()).into(),
            chain_cert: chain_cert.into(),
            ca_cert: self.ca_cert.map(Into::into),
            verify_mode,
            min_version: self.min_version.unwrap_or(TlsVersion::Tls12),
            session_cache: if self.session_cache {
                SessionCache::On
            } else {
                SessionCache::Off
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::tests::config;

    #[test]
    fn tls_options_are_honoured_with_z_and_noted_without() {
        let c = config(&[
            "-Z",
            "-o",
            "ssl_chain_cert=c.pem,ssl_ca_cert=ca.pem,ssl_verify_mode=2,ssl_min_version=tlsv1.3",
        ])
        .unwrap();
        assert_eq!(
            c.tls,
            Some(TlsSettings {
                chain_cert: "c.pem".into(),
                key: "c.pem".into(),
                ca_cert: Some("ca.pem".into()),
                verify_mode: VerifyMode::Require,
                min_version: TlsVersion::Tls13,
                session_cache: SessionCache::Off,
            })
        );
        let c = config(&[
            "-Z",
            "-o",
            "ssl_chain_cert=c.pem,ssl_key=k.pem,ssl_ciphers=HIGH",
        ])
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(
            (tls.key, tls.verify_mode),
            ("k.pem".into(), VerifyMode::None)
        );
        assert!(
            c.notes[0].starts_with("-o ssl_ciphers=HIGH: "),
            "{:?}",
            c.notes
        );
        // Without -Z the options are read and noted, and nothing is served over TLS.
        let c = config(&["-o", "ssl_chain_cert=c.pem"]).unwrap();
        assert!(
            c.tls.is_none() && c.notes[0].contains("only with -Z"),
            "{:?}",
            c.notes
        );
        for bad in [
            &["-Z"][..],
            &["-Z", "-o", "ssl_chain_cert=c.pem,ssl_verify_mode=1"],
            &["-Z", "-o", "ssl_chain_cert=c.pem,ssl_verify_mode=4"],
            &["-Z", "-o", "ssl_chain_cert=c.pem,ssl_keyformat=2"],
            &["-Z", "-o", "ssl_chain_cert=c.pem,ssl_min_version=sslv3"],
            &["-Z", "-o", "ssl_chain_cert=c.pem,ssl_nonsense"],
            &["-Z", "-o", "ssl_chain_cert="],
            &["-Z", "-o", "ssl_chain_cert=c.pem", "-l", "notls:127.0.0.1"],
        ] {
            assert!(config(bad).is_err(), "{bad:?}");
        }
    }
}
