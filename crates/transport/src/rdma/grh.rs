//! Who sent a UD datagram, from the 40 bytes in front of its payload.
//!
//! On InfiniBand and RoCE v1 (and RoCE v2 over IPv6) those bytes are a
//! Global Routing Header, whose source GID sits at bytes 8..24. On RoCE v2
//! over IPv4 the first 20 bytes are undefined and the last 20 hold the IPv4
//! header; the source GID is then the IPv4-mapped IPv6 address of its
//! source. Which of the two it is follows the rule rdma-core applies: an
//! IPv6 version nibble means a GRH unless the last 20 bytes form an IPv4
//! header with a valid checksum.

use super::ring::GRH_BYTES;

/// A 16-byte GID (IPv6 byte order).
pub type Gid = [u8; 16];

/// The source GID recorded in a received datagram's GRH area, or `None` if
/// the bytes are neither a GRH nor an IPv4 header.
pub fn source_gid(area: &[u8]) -> Option<Gid> {
    let area: &[u8; GRH_BYTES] = area.get(..GRH_BYTES)?.try_into().ok()?;
    let ip4 = &area[20..40];
    let ip4_like = ip4[0] >> 4 == 4;
    let is_ip4 = if area[0] >> 4 != 6 {
        ip4_like
    } else {
        ip4_like && ip4[0] & 0x0f == 5 && ipv4_checksum_ok(ip4)
    };
    if is_ip4 {
        Some(ipv4_mapped([ip4[12], ip4[13], ip4[14], ip4[15]]))
    } else if area[0] >> 4 == 6 {
        area[8..24].try_into().ok()
    } else {
        None
    }
}

/// `::ffff:a.b.c.d`, the GID of a RoCE v2 IPv4 address.
pub fn ipv4_mapped(ip: [u8; 4]) -> Gid {
    let mut g = [0u8; 16];
    g[10] = 0xff;
    g[11] = 0xff;
    g[12..].copy_from_slice(&ip);
    g
}

/// Whether a 20-byte IPv4 header sums (one's complement, checksum field
/// included) to all ones.
fn ipv4_checksum_ok(h: &[u8]) -> bool {
    let mut sum: u32 = h
        .chunks_exact(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_header(src: [u8; 4], dst: [u8; 4]) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&60u16.to_be_bytes());
        h[8] = 64;
        h[9] = 17; // UDP
        h[12..16].copy_from_slice(&src);
        h[16..20].copy_from_slice(&dst);
        let mut sum: u32 = h
            .chunks_exact(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        h[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        h
    }

    #[test]
    fn roce_v2_ipv4_gives_the_mapped_source_address() {
        let mut area = [0u8; 40];
        area[20..].copy_from_slice(&ipv4_header([10, 77, 0, 2], [239, 255, 77, 1]));
        assert_eq!(source_gid(&area), Some(ipv4_mapped([10, 77, 0, 2])));
        // Undefined first bytes that happen to look like IPv6: the valid
        // checksum still says IPv4.
        area[0] = 0x60;
        assert_eq!(source_gid(&area), Some(ipv4_mapped([10, 77, 0, 2])));
    }

    #[test]
    fn a_grh_gives_its_source_gid() {
        let mut area = [0u8; 40];
        area[0] = 0x60;
        // Byte 20 of the area (in the source GID) looks like the start of
        // an IPv4 header, but without a valid checksum it stays a GRH.
        let sgid: Gid = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 0x45, 6, 7, 8];
        area[8..24].copy_from_slice(&sgid);
        area[24..40].copy_from_slice(&[0xff; 16]);
        assert_eq!(source_gid(&area), Some(sgid));
    }

    #[test]
    fn neither_is_refused() {
        assert_eq!(source_gid(&[0u8; 40]), None);
        assert_eq!(source_gid(&[0x60; 39]), None, "too short");
    }
}
