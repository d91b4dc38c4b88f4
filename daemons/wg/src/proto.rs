//! Pure: the numbers of the WireGuard protocol the engine needs outside boringtun (which
//! keeps its own private): message types and sizes, where a message carries the receiver's
//! index, the overhead of a data message, and the handshake timers the engine acts on.
//! See the WireGuard paper, §5.4 (messages) and §6 (timers).

use std::time::Duration;

/// First byte of a handshake initiation.
pub const MSG_HANDSHAKE_INIT: u8 = 1;
/// First byte of a handshake response.
pub const MSG_HANDSHAKE_RESP: u8 = 2;
/// First byte of a cookie reply.
pub const MSG_COOKIE_REPLY: u8 = 3;
/// First byte of a transport data message.
pub const MSG_DATA: u8 = 4;

/// Length of a handshake initiation (also the least room `Tunn` asks for in any output).
pub const HANDSHAKE_INIT_LEN: usize = 148;
/// Length of a handshake response.
pub const HANDSHAKE_RESP_LEN: usize = 92;
/// Length of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 64;
/// Header of a data message: type and reserved (4), receiver index (4), counter (8).
pub const DATA_HEADER_LEN: usize = 16;
/// The Poly1305 tag after the encrypted payload.
pub const AEAD_TAG_LEN: usize = 16;
/// What a data message adds to the IP packet it carries.
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + AEAD_TAG_LEN;
/// The shortest datagram that names a message type.
pub const MIN_MESSAGE_LEN: usize = 4;

/// Largest IP packet the engine handles (and the size of its packet buffers).
pub const MAX_PACKET: usize = 65535;

/// boringtun gives each peer a 24-bit index and numbers its sessions in the low 8 bits of
/// the 32-bit receiver index: `receiver_index >> SESSION_INDEX_BITS` is the peer.
pub const SESSION_INDEX_BITS: u32 = 8;
/// The largest peer index (24 bits).
pub const PEER_INDEX_MASK: u32 = 0x00ff_ffff;

/// `Rekey-Timeout`: an unanswered handshake initiation is retried after this long.
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);

/// What the first bytes of a received datagram say about where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// A handshake initiation: the sender is found by decrypting its static key.
    Initiation,
    /// A handshake response, cookie reply or data message for this peer index.
    ForPeer {
        /// The message type.
        kind: u8,
        /// The 24-bit peer index (receiver index without the session bits).
        peer_index: u32,
    },
    /// Too short, or an unknown type.
    Malformed,
}

/// Classifies a received datagram by its type byte and receiver index.
pub fn classify(d: &[u8]) -> Incoming {
    let index_at = |at: usize| -> Option<u32> {
        let b = d.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) >> SESSION_INDEX_BITS)
    };
    if d.len() < MIN_MESSAGE_LEN {
        return Incoming::Malformed;
    }
    // The receiver index follows the 4-byte type field, except in a response, where the
    // sender's index comes first.
    let at = match d[0] {
        MSG_HANDSHAKE_INIT => return Incoming::Initiation,
        MSG_HANDSHAKE_RESP => 8,
        MSG_COOKIE_REPLY | MSG_DATA => 4,
        _ => return Incoming::Malformed,
    };
    match index_at(at) {
        Some(peer_index) => Incoming::ForPeer {
            kind: d[0],
            peer_index,
        },
        None => Incoming::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_classified_by_type_and_receiver_index() {
        let idx = (0x00ab_cdefu32 << SESSION_INDEX_BITS) | 5;
        let mut data = vec![MSG_DATA, 0, 0, 0];
        data.extend_from_slice(&idx.to_le_bytes());
        data.extend_from_slice(&[0; 24]);
        assert_eq!(
            classify(&data),
            Incoming::ForPeer {
                kind: MSG_DATA,
                peer_index: 0x00ab_cdef
            }
        );
        let mut resp = vec![MSG_HANDSHAKE_RESP, 0, 0, 0, 9, 9, 9, 9];
        resp.extend_from_slice(&idx.to_le_bytes());
        assert_eq!(
            classify(&resp),
            Incoming::ForPeer {
                kind: MSG_HANDSHAKE_RESP,
                peer_index: 0x00ab_cdef
            }
        );
        assert_eq!(
            classify(&[MSG_HANDSHAKE_INIT, 0, 0, 0]),
            Incoming::Initiation
        );
        assert_eq!(classify(&[MSG_DATA, 0, 0]), Incoming::Malformed);
        assert_eq!(
            classify(&[MSG_HANDSHAKE_RESP, 0, 0, 0, 1]),
            Incoming::Malformed
        );
        assert_eq!(classify(&[9, 0, 0, 0, 0, 0, 0, 0]), Incoming::Malformed);
        assert_eq!(DATA_OVERHEAD, 32);
    }
}
