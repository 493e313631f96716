//! Fast row writer for the canonical event CSV.
//!
//! Rows are formatted by hand into one large buffer (no `fmt` machinery per field), which is
//! what lets the generator write millions of rows a second; the buffer goes to the sink in
//! large blocks.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::GenerateError;

/// The header of `events.csv`, exactly as the ingest documentation defines it.
pub(crate) const HEADER: &str = "event_time,seq,kind,venue,instrument,order_id,account,trader,desk,owner,side,price,quantity,aggressor,hidden,buyer,seller,buyer_owner,seller_owner,buy_order,sell_order,bid_price,bid_quantity,ask_price,ask_quantity,status,cancel_reason";

/// The venue every generated event carries.
const VENUE: &[u8] = b"XSVL";

/// Flush the row buffer to the sink once it holds this many bytes.
const FLUSH_AT: usize = 1 << 20;

const COMMAS: &[u8] = b",,,,,,,,,,,,,,,,,,,,,,,,,,";

/// Buy or sell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Buy,
    Sell,
}

impl Side {
    pub(crate) fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    fn bytes(self) -> &'static [u8] {
        match self {
            Side::Buy => b"buy",
            Side::Sell => b"sell",
        }
    }
}

/// The event kinds the generator emits (it never emits `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    New = 0,
    Replace = 1,
    Cancel = 2,
    Fill = 3,
    Trade = 4,
    Quote = 5,
}

/// Names of [`Kind`]s, indexed by discriminant.
pub(crate) const KIND_NAMES: [&str; 6] = ["new", "replace", "cancel", "fill", "trade", "quote"];

/// One side of the top of book: price in ticks and displayed quantity.
pub(crate) type Top = Option<(i64, u64)>;

/// Where full buffers go. Compression runs on its own thread, so gzip output costs little
/// more wall time than plain output on a machine with a spare core.
enum Sink {
    Plain(BufWriter<File>),
    Gzip(Compressor),
}

struct Compressor {
    full: Option<SyncSender<Vec<u8>>>,
    empty: Receiver<Vec<u8>>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Compressor {
    fn start(inner: BufWriter<File>) -> Compressor {
        let (full, full_rx) = sync_channel::<Vec<u8>>(4);
        let (empty_tx, empty) = sync_channel::<Vec<u8>>(8);
        let thread = std::thread::spawn(move || {
            let mut encoder = GzEncoder::new(inner, Compression::fast());
            for mut buf in full_rx {
                encoder.write_all(&buf)?;
                buf.clear();
                let _ = empty_tx.try_send(buf);
            }
            encoder.finish()?.flush()
        });
        Compressor { full: Some(full), empty, thread: Some(thread) }
    }

    /// Hands over `buf`'s contents, leaving a recycled buffer in its place.
    fn send(&mut self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        let spare = self.empty.try_recv().unwrap_or_else(|_| Vec::with_capacity(buf.capacity()));
        let full = std::mem::replace(buf, spare);
        match self.full.as_ref().map(|tx| tx.send(full)) {
            Some(Ok(())) => Ok(()),
            // The thread stopped: its error says why.
            _ => self.join(),
        }
    }

    /// Closes the stream and waits for the last block to be written.
    fn join(&mut self) -> std::io::Result<()> {
        self.full = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("the compression thread panicked")),
            None => Err(std::io::Error::other("the compressed stream is already closed")),
        }
    }
}

/// Writes event rows, numbering them and counting them by kind.
pub(crate) struct EventWriter {
    sink: Sink,
    buf: Vec<u8>,
    path: PathBuf,
    seq: u64,
    last_time: u64,
    /// Rows written per [`Kind`].
    pub(crate) counts: [u64; 6],
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> GenerateError + '_ {
    move |source| GenerateError::Io { path: path.to_path_buf(), source }
}

impl EventWriter {
    /// Creates the file and writes the header.
    pub(crate) fn create(path: PathBuf, gzip: bool) -> Result<EventWriter, GenerateError> {
        let file = File::create(&path).map_err(io_err(&path))?;
        let inner = BufWriter::with_capacity(1 << 16, file);
        let sink = if gzip { Sink::Gzip(Compressor::start(inner)) } else { Sink::Plain(inner) };
        let mut buf = Vec::with_capacity(FLUSH_AT + (1 << 16));
        buf.extend_from_slice(HEADER.as_bytes());
        buf.push(b'\n');
        Ok(EventWriter { sink, buf, path, seq: 0, last_time: 0, counts: [0; 6] })
    }

    /// Rows written so far.
    #[inline]
    pub(crate) fn total(&self) -> u64 {
        self.seq
    }

    /// Hands the buffered rows to the sink when enough have accumulated.
    #[inline]
    pub(crate) fn checkpoint(&mut self) -> Result<(), GenerateError> {
        if self.buf.len() >= FLUSH_AT { self.drain() } else { Ok(()) }
    }

    fn drain(&mut self) -> Result<(), GenerateError> {
        let result = match &mut self.sink {
            Sink::Plain(w) => {
                let r = w.write_all(&self.buf);
                self.buf.clear();
                r
            }
            Sink::Gzip(c) => c.send(&mut self.buf),
        };
        result.map_err(io_err(&self.path))
    }

    /// Writes what is left and closes the file (finishing the gzip stream).
    pub(crate) fn finish(mut self) -> Result<PathBuf, GenerateError> {
        self.drain()?;
        let path = self.path;
        match self.sink {
            Sink::Plain(mut w) => w.flush().map_err(io_err(&path))?,
            Sink::Gzip(mut c) => c.join().map_err(io_err(&path))?,
        }
        Ok(path)
    }

    /// `event_time,seq,kind,venue,instrument,` — the first five fields of every row.
    #[inline]
    fn prefix(&mut self, kind: Kind, time: u64, symbol: &[u8]) {
        debug_assert!(time >= self.last_time, "event time went backwards");
        self.last_time = time;
        self.seq += 1;
        self.counts[kind as usize] += 1;
        let buf = &mut self.buf;
        push_u64(buf, time);
        buf.push(b',');
        push_u64(buf, self.seq);
        buf.push(b',');
        buf.extend_from_slice(KIND_NAMES[kind as usize].as_bytes());
        buf.push(b',');
        buf.extend_from_slice(VENUE);
        buf.push(b',');
        buf.extend_from_slice(symbol);
        buf.push(b',');
    }

    /// An order event (`new`, `replace`, `cancel`, `fill`). `party` is the pre-formatted
    /// `account,trader,desk,owner,` block of the order's account (owner left empty).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn order(
        &mut self,
        kind: Kind,
        time: u64,
        symbol: &[u8],
        order_id: u64,
        party: &[u8],
        side: Side,
        price: Option<i64>,
        quantity: Option<u64>,
        aggressor: Option<Side>,
    ) {
        self.prefix(kind, time, symbol);
        let buf = &mut self.buf;
        buf.push(b'O');
        push_u64(buf, order_id);
        buf.push(b',');
        buf.extend_from_slice(party);
        buf.extend_from_slice(side.bytes());
        buf.push(b',');
        if let Some(p) = price {
            push_price(buf, p);
        }
        buf.push(b',');
        if let Some(q) = quantity {
            push_u64(buf, q);
        }
        match aggressor {
            Some(a) => {
                buf.push(b',');
                buf.extend_from_slice(a.bytes());
                buf.extend_from_slice(&COMMAS[..12]);
            }
            None => buf.extend_from_slice(&COMMAS[..13]),
        }
        buf.extend_from_slice(b",\n");
    }

    /// A `fill` against hidden liquidity whose owner the recording does not name: no account,
    /// `hidden` true.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn hidden_fill(
        &mut self,
        time: u64,
        symbol: &[u8],
        order_id: u64,
        side: Side,
        price: i64,
        quantity: u64,
        aggressor: Side,
    ) {
        self.prefix(Kind::Fill, time, symbol);
        let buf = &mut self.buf;
        // Order id 0: the recording does not know the hidden order.
        if order_id != 0 {
            buf.push(b'O');
            push_u64(buf, order_id);
        }
        buf.extend_from_slice(b",,,,,");
        buf.extend_from_slice(side.bytes());
        buf.push(b',');
        push_price(buf, price);
        buf.push(b',');
        push_u64(buf, quantity);
        buf.push(b',');
        buf.extend_from_slice(aggressor.bytes());
        buf.extend_from_slice(b",true");
        buf.extend_from_slice(&COMMAS[..12]);
        buf.push(b'\n');
    }

    /// A `cancel` the venue made without a request of the member's (self-trade prevention):
    /// its `cancel_reason` is `expired`.
    pub(crate) fn venue_cancel(&mut self, time: u64, symbol: &[u8], order_id: u64, party: &[u8], side: Side) {
        self.order(Kind::Cancel, time, symbol, order_id, party, side, None, None, None);
        self.buf.pop();
        self.buf.extend_from_slice(b"expired\n");
    }

    /// A `trade` print.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(crate) fn trade(
        &mut self,
        time: u64,
        symbol: &[u8],
        price: i64,
        quantity: u64,
        aggressor: Side,
        buyer: &[u8],
        seller: &[u8],
        buy_order: u64,
        sell_order: u64,
    ) {
        self.prefix(Kind::Trade, time, symbol);
        let buf = &mut self.buf;
        buf.extend_from_slice(&COMMAS[..6]);
        push_price(buf, price);
        buf.push(b',');
        push_u64(buf, quantity);
        buf.push(b',');
        buf.extend_from_slice(aggressor.bytes());
        buf.extend_from_slice(b",,");
        buf.extend_from_slice(buyer);
        buf.push(b',');
        buf.extend_from_slice(seller);
        buf.extend_from_slice(b",,,O");
        push_u64(buf, buy_order);
        buf.extend_from_slice(b",O");
        push_u64(buf, sell_order);
        buf.extend_from_slice(&COMMAS[..6]);
        buf.push(b'\n');
    }

    /// A level-1 `quote`; an empty side leaves its two fields empty.
    #[inline]
    pub(crate) fn quote(&mut self, time: u64, symbol: &[u8], bid: Top, ask: Top) {
        self.prefix(Kind::Quote, time, symbol);
        let buf = &mut self.buf;
        buf.extend_from_slice(&COMMAS[..16]);
        if let Some((p, q)) = bid {
            push_price(buf, p);
            buf.push(b',');
            push_u64(buf, q);
        } else {
            buf.push(b',');
        }
        buf.push(b',');
        if let Some((p, q)) = ask {
            push_price(buf, p);
            buf.push(b',');
            push_u64(buf, q);
        } else {
            buf.push(b',');
        }
        buf.extend_from_slice(b",,\n");
    }
}

const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `v` in decimal.
#[inline]
pub(crate) fn push_u64(buf: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    while v >= 100 {
        let d = (v % 100) as usize * 2;
        v /= 100;
        i -= 2;
        tmp[i] = DIGIT_PAIRS[d];
        tmp[i + 1] = DIGIT_PAIRS[d + 1];
    }
    if v >= 10 {
        let d = v as usize * 2;
        i -= 2;
        tmp[i] = DIGIT_PAIRS[d];
        tmp[i + 1] = DIGIT_PAIRS[d + 1];
    } else {
        i -= 1;
        tmp[i] = b'0' + v as u8;
    }
    buf.extend_from_slice(&tmp[i..]);
}

/// Appends a price given in cents (scale 2) as `units.cc`.
#[inline]
pub(crate) fn push_price(buf: &mut Vec<u8>, ticks: i64) {
    debug_assert!(ticks > 0, "prices are positive");
    let ticks = ticks.unsigned_abs();
    push_u64(buf, ticks / 100);
    let d = (ticks % 100) as usize * 2;
    buf.push(b'.');
    buf.push(DIGIT_PAIRS[d]);
    buf.push(DIGIT_PAIRS[d + 1]);
}

/// A price in cents as text, for reference data and labels.
pub(crate) fn price_text(ticks: i64) -> String {
    let mut buf = Vec::with_capacity(16);
    push_price(&mut buf, ticks);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers() {
        let mut b = Vec::new();
        for v in [0u64, 7, 10, 99, 100, 12345, u64::MAX] {
            b.clear();
            push_u64(&mut b, v);
            assert_eq!(b, v.to_string().as_bytes());
        }
        assert_eq!(price_text(1), "0.01");
        assert_eq!(price_text(12345), "123.45");
        assert_eq!(price_text(1000), "10.00");
    }
}
