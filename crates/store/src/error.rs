//! The store's errors. Each one leaves the table unchanged.

/// Why a store could not be built or a write was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// `StoreConfig::capacity` was 0.
    #[error("store capacity must be at least 1 key")]
    ZeroCapacity,
    /// `StoreConfig::value_size` was 0.
    #[error("store value size must be at least 1 byte")]
    ZeroValueSize,
    /// `StoreConfig::value_size` is above what an item can hold.
    #[error("store value size of {value_size} bytes exceeds the maximum of {max} bytes")]
    ValueSizeTooLarge { value_size: usize, max: usize },
    /// `StoreConfig::capacity` is above what the index can address.
    #[error("store capacity of {capacity} keys exceeds the maximum of {max} keys")]
    CapacityTooLarge { capacity: usize, max: usize },
    /// The table's memory could not be allocated.
    #[error("could not allocate {bytes} bytes for the store")]
    OutOfMemory { bytes: usize },
    /// A value is longer than the store's configured value size.
    #[error("value of {len} bytes exceeds the store's value size of {max} bytes")]
    ValueTooLong { len: usize, max: usize },
    /// A new key found no free item or no free index slot near its home bucket. Nothing is evicted.
    #[error("store is full: no room for a new key (capacity {capacity} keys)")]
    Full { capacity: usize },
}
