//! Pure: parsers for what detection endpoints answer. Bodies are untrusted: they are
//! size-limited by the caller and every field is validated here.

use std::net::IpAddr;

/// Why an answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The echo body is not one IP address.
    #[error("the answer is not an IP address (got {preview:?})")]
    NotAnAddress {
        /// The first characters of the body.
        preview: String,
    },
    /// The trace has no `ip=` line.
    #[error("the trace has no `ip=` line")]
    TraceWithoutIp,
    /// The trace says the request went through WARP, so `ip=` is Cloudflare's egress.
    #[error("the trace says warp={warp}: the address is WARP's egress, not this host's")]
    TraceThroughWarp {
        /// The `warp=` value.
        warp: String,
    },
    /// The trace's `h=` does not name the host that was asked.
    #[error("the trace answered for host {got:?} instead of {want:?}")]
    TraceWrongHost {
        /// The `h=` value.
        got: String,
        /// The host of the URL.
        want: String,
    },
    /// The body is not valid UTF-8 text.
    #[error("the answer is not text")]
    NotText,
}

fn preview(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Reads a plain-text echo answer (ipify style): one address, surrounding whitespace allowed.
pub fn echo(body: &[u8]) -> Result<IpAddr, ParseError> {
    let text = std::str::from_utf8(body).map_err(|_| ParseError::NotText)?;
    let t = text.trim();
    t.parse::<IpAddr>().map_err(|_| ParseError::NotAnAddress {
        preview: preview(t),
    })
}

/// Reads a `/cdn-cgi/trace` answer (`key=value` lines): the `ip=` value, refusing
/// `warp=on`/`warp=plus`, and an `h=` that differs from `host` when both are known.
pub fn trace(body: &[u8], host: Option<&str>) -> Result<IpAddr, ParseError> {
    let text = std::str::from_utf8(body).map_err(|_| ParseError::NotText)?;
    let mut ip = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        match k.trim() {
            "ip" => ip = Some(v),
            "warp" if v != "off" => {
                return Err(ParseError::TraceThroughWarp { warp: v.to_owned() });
            }
            "h" => {
                if let Some(want) = host
                    && !v.eq_ignore_ascii_case(want)
                {
                    return Err(ParseError::TraceWrongHost {
                        got: preview(v),
                        want: want.to_owned(),
                    });
                }
            }
            _ => {}
        }
    }
    let ip = ip.ok_or(ParseError::TraceWithoutIp)?;
    ip.parse::<IpAddr>().map_err(|_| ParseError::NotAnAddress {
        preview: preview(ip),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Untrusted bodies never panic the parsers.
        #[test]
        fn parsers_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = echo(&body);
            let _ = trace(&body, Some("www.cloudflare.com"));
        }
    }

    #[test]
    fn echo_accepts_one_address_with_whitespace() {
        assert_eq!(echo(b"81.2.69.160\n").unwrap().to_string(), "81.2.69.160");
        assert_eq!(echo(b"  2a01:4f8::1 ").unwrap().to_string(), "2a01:4f8::1");
    }

    #[test]
    fn echo_refuses_html_and_lists() {
        assert!(matches!(
            echo(b"<html>blocked</html>"),
            Err(ParseError::NotAnAddress { .. })
        ));
        assert!(echo(b"81.2.69.160, 10.0.0.1").is_err());
        assert!(echo(b"").is_err());
        assert_eq!(echo(&[0xff, 0xfe]), Err(ParseError::NotText));
    }

    #[test]
    fn trace_reads_ip_and_checks_warp_and_host() {
        let ok = b"fl=1f1\nh=www.cloudflare.com\nip=81.2.69.160\nts=1.0\nwarp=off\n";
        assert_eq!(
            trace(ok, Some("www.cloudflare.com")).unwrap().to_string(),
            "81.2.69.160"
        );
        let warp = b"h=www.cloudflare.com\nip=104.28.1.2\nwarp=on\n";
        assert_eq!(
            trace(warp, None),
            Err(ParseError::TraceThroughWarp { warp: "on".into() })
        );
        let plus = b"ip=104.28.1.2\nwarp=plus\n";
        assert!(matches!(
            trace(plus, None),
            Err(ParseError::TraceThroughWarp { .. })
        ));
        let other = b"h=evil.example\nip=81.2.69.160\n";
        assert!(matches!(
            trace(other, Some("www.cloudflare.com")),
            Err(ParseError::TraceWrongHost { .. })
        ));
        assert_eq!(trace(b"fl=1\nh=x\n", None), Err(ParseError::TraceWithoutIp));
        assert!(matches!(
            trace(b"ip=not-an-ip\n", None),
            Err(ParseError::NotAnAddress { .. })
        ));
    }
}
