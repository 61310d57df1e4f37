//! How window state is keyed and encoded, the same for both backends and in snapshots: a
//! pane's logical key is `PANE, end, start, key row` (timestamps order-preserving big-endian,
//! key rows in Arrow's row format); sessions are typed keyed state (`sessions`). A value is the
//! row (Arrow row format) of every aggregate's accumulator state fields, so accumulators are
//! rebuilt by `merge_batch`.

use arrow::array::ArrayRef;
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use sluice_common::key_groups::{hash_keys, key_group};

use super::assigner::Window;
use super::pane_store::df;
use crate::state::{decode_i64, encode_i64, state_ids};

pub(crate) struct StateCodec {
    pub(crate) keys: RowConverter,
    states: RowConverter,
    /// How many state fields each aggregate has.
    widths: Vec<usize>,
    pub max_parallelism: u32,
    /// The key is one BIGINT column: heap panes keep the values themselves (`pane_keys.rs`).
    pub(crate) int_key: bool,
}

fn arrow_err(e: arrow::error::ArrowError) -> String {
    e.to_string()
}

impl StateCodec {
    pub(crate) fn new(
        keys: RowConverter,
        aggs: &[AggregateFunctionExpr],
        max_parallelism: u32,
    ) -> Result<Self, String> {
        let mut fields = Vec::new();
        let mut widths = Vec::new();
        for a in aggs {
            let f = df(a.state_fields())?;
            widths.push(f.len());
            fields.extend(f.iter().map(|f| SortField::new(f.data_type().clone())));
        }
        Ok(StateCodec {
            keys,
            states: RowConverter::new(fields).map_err(arrow_err)?,
            widths,
            max_parallelism,
            int_key: false,
        })
    }

    /// Key groups of key rows (the same hash the hash partitioner uses).
    pub(super) fn key_groups<'a>(&self, rows: impl Iterator<Item = &'a [u8]>) -> Result<Vec<u32>, String> {
        let parser = self.keys.parser();
        let parsed: Vec<_> = rows.map(|r| parser.parse(r)).collect();
        let n = parsed.len();
        let columns = self.keys.convert_rows(parsed).map_err(arrow_err)?;
        self.key_groups_of(&columns, n)
    }

    /// Key groups of `n` keys given as columns.
    pub(super) fn key_groups_of(&self, columns: &[ArrayRef], n: usize) -> Result<Vec<u32>, String> {
        Ok(hash_keys(columns, n)?
            .into_iter()
            .map(|h| key_group(h, self.max_parallelism))
            .collect())
    }

    /// Key columns from key rows.
    pub(super) fn key_columns<'a>(&self, rows: impl Iterator<Item = &'a [u8]>) -> Result<Vec<ArrayRef>, String> {
        let parser = self.keys.parser();
        let parsed: Vec<_> = rows.map(|r| parser.parse(r)).collect();
        self.keys.convert_rows(parsed).map_err(arrow_err)
    }

    /// Rows of the state of each aggregate (one `Vec<ArrayRef>` per aggregate, equal lengths).
    pub(crate) fn encode_states(&self, per_agg: &[Vec<ArrayRef>]) -> Result<Rows, String> {
        let columns: Vec<ArrayRef> = per_agg.iter().flatten().cloned().collect();
        self.states.convert_columns(&columns).map_err(arrow_err)
    }

    /// The state arrays of each aggregate from encoded rows.
    pub(crate) fn decode_states<'a>(&self, rows: impl Iterator<Item = &'a [u8]>) -> Result<Vec<Vec<ArrayRef>>, String> {
        let parser = self.states.parser();
        let parsed: Vec<_> = rows.map(|r| parser.parse(r)).collect();
        let mut columns = self.states.convert_rows(parsed).map_err(arrow_err)?.into_iter();
        Ok(self
            .widths
            .iter()
            .map(|w| columns.by_ref().take(*w).collect())
            .collect())
    }
}

pub(super) fn pane_prefix(w: Window) -> Vec<u8> {
    let mut k = Vec::with_capacity(17);
    k.push(state_ids::PANE);
    k.extend_from_slice(&encode_i64(w.end));
    k.extend_from_slice(&encode_i64(w.start));
    k
}

pub(super) fn pane_key(w: Window, key_row: &[u8]) -> Vec<u8> {
    let mut k = pane_prefix(w);
    k.extend_from_slice(key_row);
    k
}

/// (window, key row) of a pane key.
pub(super) fn parse_pane_key(k: &[u8]) -> Result<(Window, &[u8]), String> {
    if k.len() < 17 || k[0] != state_ids::PANE {
        return Err("malformed window pane key in state".into());
    }
    let end = decode_i64(&k[1..9])?;
    let start = decode_i64(&k[9..17])?;
    Ok((Window { start, end }, &k[17..]))
}
