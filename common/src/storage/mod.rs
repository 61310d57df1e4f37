//! Checkpoint storage (DESIGN §8): one `object_store` API over `file://`, `s3://` (Flink's
//! `s3.*` keys) and `memory://` (unit tests), the checkpoint directory layout, and the
//! checksummed `_metadata` codec whose create-only write is what makes a checkpoint exist.

mod layout;
mod metadata;
mod store;

pub use layout::{checkpoint_id_of, checkpoint_url, job_url, location_url, parent_url, url_join, CheckpointLayout};
pub use metadata::{decode_metadata, encode_metadata, MetadataError};
pub use store::{open_location, CheckpointStore, StorageLocation};
