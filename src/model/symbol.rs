//! Interned names: instruments, accounts, owners, venues, order ids.
//!
//! A [`Symbol`] is a stable 64-bit id computed from the text alone, so every worker and every
//! process derives the same id without coordination, and events stay small and cheap to
//! exchange. Most identifiers need no dictionary at all, because the id *is* the text:
//!
//! * canonical decimal integers (order ids, numeric accounts) map to `n + 1`;
//! * text of up to 10 characters from `[0-9A-Za-z_.-]` (tickers, account codes, desks, most
//!   order ids) is packed as a base-66 number (65 characters and an end mark);
//! * anything else is hashed with XXH3 and its text kept in a [`SymbolTable`] for output.

use serde::{Deserialize, Serialize};

/// Tag bits: `0x` integer, `10` packed text, `11` hash.
const TEXT: u64 = 1 << 63;
const HASHED: u64 = 3 << 62;
const INLINE_MAX: usize = 10;

/// A stable id for a name. [`Symbol::NONE`] means "not known".
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Symbol(pub u64);

impl Symbol {
    /// The absent name (an empty field).
    pub const NONE: Symbol = Symbol(0);

    /// The id of `text`. Empty text is [`Symbol::NONE`].
    #[inline]
    pub fn of(text: &[u8]) -> Symbol {
        if text.is_empty() {
            return Symbol::NONE;
        }
        if let Some(n) = canonical_integer(text) {
            return Symbol(n + 1);
        }
        if text.len() <= INLINE_MAX {
            // Left-aligned base-66 digits, so shorter texts end in zero codes (66^10 < 2^61).
            // Each digit is weighted independently: no chain of dependent multiplications.
            let mut packed = 0u64;
            let mut fits = true;
            for (i, &b) in text.iter().enumerate() {
                let code = CODE[b as usize];
                fits &= code != 0;
                packed += code as u64 * POWERS[i];
            }
            if fits {
                return Symbol(TEXT | packed);
            }
        }
        Symbol((xxhash_rust::xxh3::xxh3_64(text) >> 2) | HASHED)
    }

    /// The text of a packed symbol.
    fn unpack(self) -> Option<String> {
        let mut text = String::new();
        self.unpack_into(&mut text).then_some(text)
    }

    /// Appends the text of a packed symbol to `out`; false (and nothing appended) for other
    /// symbols.
    fn unpack_into(self, out: &mut String) -> bool {
        if self.0 & HASHED != TEXT {
            return false;
        }
        let mut packed = self.0 & !TEXT;
        let mut codes = [0u8; INLINE_MAX];
        for slot in codes.iter_mut().rev() {
            *slot = (packed % BASE) as u8;
            packed /= BASE;
        }
        out.extend(codes.iter().take_while(|&&c| c != 0).map(|&c| ALPHABET[c as usize - 1] as char));
        true
    }

    /// The id of a non-negative integer, identical to `Symbol::of` of its decimal text.
    #[inline]
    pub fn of_integer(n: u64) -> Symbol {
        if n < TEXT - 1 { Symbol(n + 1) } else { Symbol::of(n.to_string().as_bytes()) }
    }

    /// True for [`Symbol::NONE`].
    #[inline]
    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    /// True when the text must be looked up in a dictionary to be shown.
    #[inline]
    pub fn needs_dictionary(self) -> bool {
        self.0 & HASHED == HASHED
    }

    /// The integer this symbol stands for, when it stands for one.
    pub fn as_integer(self) -> Option<u64> {
        (!self.is_none() && self.0 & TEXT == 0).then(|| self.0 - 1)
    }
}

const ALPHABET: &[u8; 65] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-.";
const BASE: u64 = ALPHABET.len() as u64 + 1;

/// `POWERS[i]` is the weight of the character at position `i`: `BASE^(INLINE_MAX - 1 - i)`.
const POWERS: [u64; INLINE_MAX] = {
    let mut powers = [1u64; INLINE_MAX];
    let mut i = INLINE_MAX - 1;
    while i > 0 {
        powers[i - 1] = powers[i] * BASE;
        i -= 1;
    }
    powers
};

/// Byte -> 6-bit code (0: not packable).
const CODE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8 + 1;
        i += 1;
    }
    table
};

/// `Some(n)` when `text` is the canonical decimal form of `n` (no sign, no leading zeros) and
/// fits below 2^63 - 1.
#[inline]
fn canonical_integer(text: &[u8]) -> Option<u64> {
    if text.len() > 18 || (text.len() > 1 && text[0] == b'0') {
        return None;
    }
    let mut n = 0u64;
    for &b in text {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + d as u64;
    }
    Some(n)
}

/// A `HashMap` keyed by symbols and ids: the operators' key hasher
/// ([`surveil_operators::hashing::KeyHasher`]).
pub type IdMap<K, V> = surveil_operators::KeyMap<K, V>;

/// The texts behind hashed symbols.
#[derive(Default, Debug, Clone)]
pub struct SymbolTable {
    names: IdMap<Symbol, Box<str>>,
    collisions: u64,
}

impl SymbolTable {
    /// Records the text of `symbol`. Returns true if it was new. Two different texts with the
    /// same id (a 64-bit hash collision) are counted, and the first text is kept.
    pub fn insert(&mut self, symbol: Symbol, text: &str) -> bool {
        if !symbol.needs_dictionary() {
            return false;
        }
        match self.names.get(&symbol) {
            Some(existing) => {
                if &**existing != text {
                    self.collisions += 1;
                }
                false
            }
            None => {
                self.names.insert(symbol, text.into());
                true
            }
        }
    }

    /// Interns `text`, recording it, and returns its id and whether it was new here.
    pub fn intern(&mut self, text: &[u8]) -> (Symbol, bool) {
        let symbol = Symbol::of(text);
        if !symbol.needs_dictionary() || self.names.contains_key(&symbol) {
            return (symbol, false);
        }
        let text = String::from_utf8_lossy(text);
        self.names.insert(symbol, text.into());
        (symbol, true)
    }

    /// The text of `symbol`: "" for NONE, the number for integer symbols, the recorded text
    /// otherwise, or a `#hex` placeholder if it was never recorded.
    pub fn name(&self, symbol: Symbol) -> std::borrow::Cow<'_, str> {
        if symbol.is_none() {
            return "".into();
        }
        if let Some(n) = symbol.as_integer() {
            return n.to_string().into();
        }
        if let Some(text) = symbol.unpack() {
            return text.into();
        }
        match self.names.get(&symbol) {
            Some(name) => (&**name).into(),
            None => format!("#{:016x}", symbol.0).into(),
        }
    }

    /// Appends the text of `symbol` (as [`SymbolTable::name`] gives it) to `out`, without
    /// allocating for packed and integer symbols.
    pub fn write_name(&self, symbol: Symbol, out: &mut String) {
        if symbol.is_none() {
            return;
        }
        if let Some(n) = symbol.as_integer() {
            out.push_str(itoa::Buffer::new().format(n));
        } else if !symbol.unpack_into(out) {
            match self.names.get(&symbol) {
                Some(name) => out.push_str(name),
                None => out.push_str(&format!("#{:016x}", symbol.0)),
            }
        }
    }

    /// The number of hash collisions seen.
    pub fn collisions(&self) -> u64 {
        self.collisions
    }

    /// The recorded texts, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Symbol, &str)> {
        self.names.iter().map(|(symbol, text)| (*symbol, &**text))
    }

    /// The number of recorded texts.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no text is recorded.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_round_trip_without_a_dictionary() {
        let table = SymbolTable::default();
        for text in ["0", "7", "16113575", "123456789012345678"] {
            let s = Symbol::of(text.as_bytes());
            assert!(!s.needs_dictionary());
            assert_eq!(table.name(s), text);
        }
        assert_eq!(Symbol::of(b"16113575"), Symbol::of_integer(16113575));
    }

    #[test]
    fn non_canonical_numbers_and_text_are_hashed() {
        let mut table = SymbolTable::default();
        for text in ["007 x", "-1 ", "ACC-000000001", "VOLCANIC_ROCK_VOUCHER", "1234567890123456789012", "Ünïcode"] {
            let (s, new) = table.intern(text.as_bytes());
            assert!(s.needs_dictionary(), "{text}");
            assert!(new);
            assert_eq!(table.name(s), text);
        }
        assert_eq!(Symbol::of(b""), Symbol::NONE);
        assert_eq!(table.name(Symbol::NONE), "");
    }

    #[test]
    fn short_identifiers_are_packed_without_a_dictionary() {
        let table = SymbolTable::default();
        for text in ["AAPL", "ACC00123", "Valentina", "O123456789", "007", "a", "Zz_9", "MM-EQ1", "BRK.A", "----------"]
        {
            let s = Symbol::of(text.as_bytes());
            assert!(!s.needs_dictionary() && s.as_integer().is_none(), "{text}");
            assert_eq!(table.name(s), text);
        }
        assert_ne!(Symbol::of(b"A"), Symbol::of(b"A0"));
        assert_ne!(Symbol::of(b"007"), Symbol::of(b"7"));
    }

    #[test]
    fn ids_are_stable() {
        // Pinned: a change here changes every alert id and every worker assignment.
        assert_eq!(Symbol::of(b"ACC 001").0, (xxhash_rust::xxh3::xxh3_64(b"ACC 001") >> 2) | HASHED);
        assert_eq!(Symbol::of(b"42"), Symbol(43));
        assert_eq!(Symbol::of(b"A").0, TEXT | (11 * BASE.pow(9)));
    }
}
