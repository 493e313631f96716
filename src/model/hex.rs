//! Lower-case hexadecimal text of bytes (digests, keys, ids), and strict reading of it.

/// `bytes` as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(DIGITS[(b >> 4) as usize] as char);
        text.push(DIGITS[(b & 15) as usize] as char);
    }
    text
}

/// Exactly `N` bytes from `2N` hex digits (either case; surrounding white space ignored, no
/// sign or prefix).
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.len() != 2 * N || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        *byte = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_strictness() {
        assert_eq!(super::encode(&[0x0a, 0xff]), "0aff");
        assert_eq!(super::decode::<2>(" 0AfF\n"), Some([0x0a, 0xff]));
        assert_eq!(super::decode::<2>("+aff"), None);
        assert_eq!(super::decode::<2>("0af"), None);
        assert_eq!(super::decode::<2>("0afg"), None);
    }
}
