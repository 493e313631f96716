//! The domain model: events, exact money, interned names.

pub mod decimal;
pub mod event;
pub mod symbol;

pub use decimal::{Decimal, Price, Quantity};
pub use event::{Body, Event, EventKind, Level, Origin, Party, Side, Timestamp, TradingStatus};
pub use symbol::{IdMap, Symbol, SymbolTable};
