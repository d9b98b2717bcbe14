//! The window layers' part of a sequence's saved state (llama.cpp's `LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY`
//! bytes of a sliding-window model), laid out again so that a restore puts each cell where a cold
//! run computed it.
//!
//! llama.cpp saves only the cells the window still sees and restores them from the sequence's
//! first cell, while a cold run of the same prompt keeps them after the masked cells of every
//! earlier position (the window cache holds every cell, `swa_full`). Attention sums over the
//! cache's extent in groups that follow cell indices (SIMD lanes without flash attention, a
//! thread's share of the cells with it), so a token decoded after a restore that moved the cells
//! gets other bits. Padding the state with masked cells for the earlier positions (zeros: they
//! are masked in every later step, so never read as values) gives the cold layout back.
//!
//! The format is llama.cpp's `llama_kv_cache::state_write` for one sequence (llama-cpp-sys-2
//! 0.1.161), after the context's magic number and the sequence id: a stream count, and per stream
//! a cell count, non-zero in the sequence's stream only; there per cell its position, sequence
//! count (1) and sequence id, then a header (V transposed, layer count, two rotation counts), per
//! layer the key type, row size and rows, then per layer the value type, row size and rows, or
//! transposed: type, element size, embedding width and per embedding row one element per cell.
//! Anything else (another version's layout, M-RoPE's extra cell fields) is not rewritten: the
//! restore is refused, and the prompt is evaluated instead; so is a window cache smaller than the
//! context (llama.cpp's `swa_full` off: it has no room for the padding).
//!
//! The padding holds for windows that mask a cell for every later position once they mask it
//! (llama.cpp's standard and chunked windows). Its zero cells count as held for llama.cpp, so a
//! slot remembers where its real cells start (`Slot::window_floor`) and is not continued from a
//! point whose window reaches below it.

/// Bytes of one cell's position, sequence count and sequence id.
const CELL: usize = 12;

/// A reader over state bytes that fails, instead of panicking, past their end.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let slice = self.bytes.get(self.at..end)?;
        self.at = end;
        Some(slice)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    fn done(&self) -> bool {
        self.at == self.bytes.len()
    }
}

/// About the bytes of a window-layer state of `bytes` bytes and `cells` cells once padded to
/// `positions` cells (every cell's bytes but a few headers are in proportion to the cells).
pub(super) fn padded_len(bytes: usize, cells: usize, positions: usize) -> Option<usize> {
    bytes.checked_mul(positions)?.checked_div(cells)
}

/// `window`'s bytes (one sequence's window-layer state) with a cell for each position from `first`
/// to the first saved one put before the saved cells, zero (the same bytes where none is
/// missing). `None` where the bytes are not the layout described above, or where the result would
/// take more than `max_len` bytes (it is about the window cache's size for the whole sequence).
pub(super) fn with_earlier_cells(window: &[u8], first: i32, max_len: usize) -> Option<Vec<u8>> {
    let mut r = Reader { bytes: window, at: 0 };
    let mut out = Vec::new();
    // The context's magic number and the saved sequence's id, then the cache's streams (one per
    // sequence where each has its own): a cell count each, cells only in the sequence's stream.
    out.extend_from_slice(r.take(8)?);
    let streams = r.u32()?;
    out.extend_from_slice(&streams.to_le_bytes());
    let mut padded = false;
    for _ in 0..streams {
        let cells = r.u32()? as usize;
        if cells == 0 {
            out.extend_from_slice(&0u32.to_le_bytes());
        } else if std::mem::replace(&mut padded, true) {
            return None;
        } else {
            stream_with_earlier_cells(&mut r, cells, first, max_len, &mut out)?;
        }
    }
    r.done().then_some(out)
}

/// One stream's `cells` cells read from `r`, written to `out` after a cell for each position from
/// `first` to the first saved one; `None` past `max_len` bytes.
fn stream_with_earlier_cells(
    r: &mut Reader,
    cells: usize,
    first: i32,
    max_len: usize,
    out: &mut Vec<u8>,
) -> Option<()> {
    let meta = r.take(cells.checked_mul(CELL)?)?;
    let pos = |i: usize| i32::from_le_bytes(meta[i * CELL..i * CELL + 4].try_into().expect("4 bytes"));
    let count = |i: usize| u32::from_le_bytes(meta[i * CELL + 4..i * CELL + 8].try_into().expect("4 bytes"));
    // Consecutive positions, one sequence each: anything else is another layout.
    if (0..cells).any(|i| count(i) != 1 || pos(i) != pos(0) + i as i32) {
        return None;
    }
    let missing = usize::try_from(pos(0).checked_sub(first)?).ok()?;
    let len = padded_len(r.bytes.len(), cells, cells + missing)?;
    if len > max_len {
        return None;
    }
    out.reserve(len);
    out.extend_from_slice(&u32::try_from(cells + missing).ok()?.to_le_bytes());
    let seq = &meta[8..12];
    for p in first..pos(0) {
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(seq);
    }
    out.extend_from_slice(meta);
    let header = r.take(16)?;
    let transposed = match u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) {
        0 => false,
        1 => true,
        _ => return None,
    };
    let layers = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
    out.extend_from_slice(header);
    // A layer's type and row size, then one row per cell, the missing ones first.
    let rows = |r: &mut Reader, out: &mut Vec<u8>| -> Option<()> {
        out.extend_from_slice(r.take(4)?);
        let row = usize::try_from(r.u64()?).ok().filter(|&n| n > 0)?;
        out.extend_from_slice(&(row as u64).to_le_bytes());
        out.resize(out.len() + missing.checked_mul(row)?, 0);
        out.extend_from_slice(r.take(cells.checked_mul(row)?)?);
        Some(())
    };
    for _ in 0..layers {
        rows(r, out)?;
    }
    // Values: every layer's (an architecture whose layers share them, which llama.cpp leaves
    // out, is another layout).
    for _ in 0..layers {
        if !transposed {
            rows(r, out)?;
            continue;
        }
        out.extend_from_slice(r.take(4)?);
        let element = r.u32()? as usize;
        let width = r.u32()? as usize;
        if element == 0 || width == 0 {
            return None;
        }
        out.extend_from_slice(&(element as u32).to_le_bytes());
        out.extend_from_slice(&(width as u32).to_le_bytes());
        for _ in 0..width {
            out.resize(out.len() + missing.checked_mul(element)?, 0);
            out.extend_from_slice(r.take(cells.checked_mul(element)?)?);
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANY: usize = usize::MAX;

    /// One stream's cells from position `from` (each data byte its cell's position, or 0 below
    /// `zero_below`): `layers` layers of keys and values, rows of 4 bytes, or transposed values
    /// of width 3 with 2-byte elements.
    fn stream(from: i32, cells: usize, layers: u32, transposed: bool, zero_below: i32) -> Vec<u8> {
        let positions = from..from + cells as i32;
        let byte = |p: i32| if p < zero_below { 0 } else { p as u8 };
        let mut s = (cells as u32).to_le_bytes().to_vec();
        for p in positions.clone() {
            s.extend([p.to_le_bytes(), 1u32.to_le_bytes(), 1i32.to_le_bytes()].concat());
        }
        s.extend([u32::from(transposed), layers, 0, 0].map(u32::to_le_bytes).concat());
        let rows = |s: &mut Vec<u8>| {
            s.extend(1i32.to_le_bytes());
            s.extend(4u64.to_le_bytes());
            positions.clone().for_each(|p| s.extend([byte(p); 4]));
        };
        for _ in 0..layers {
            rows(&mut s);
        }
        for _ in 0..layers {
            if !transposed {
                rows(&mut s);
                continue;
            }
            s.extend([1u32, 2, 3].map(u32::to_le_bytes).concat());
            (0..3).for_each(|_| positions.clone().for_each(|p| s.extend([byte(p); 2])));
        }
        s
    }

    /// A state of the sequence in the second of three streams.
    fn state(stream_bytes: &[u8]) -> Vec<u8> {
        let mut s = [0xaf14_3cd8u32, 1, 3, 0].map(u32::to_le_bytes).concat();
        s.extend(stream_bytes);
        s.extend(0u32.to_le_bytes());
        s
    }

    /// The padded state is the state of every position with the earlier cells' data zero: a cold
    /// run's window state with its masked cells kept.
    #[test]
    fn earlier_cells_come_first_and_zero_in_both_value_layouts() {
        for transposed in [false, true] {
            let padded = with_earlier_cells(&state(&stream(5, 3, 2, transposed, 0)), 0, ANY);
            assert_eq!(padded, Some(state(&stream(0, 8, 2, transposed, 5))), "transposed {transposed}");
        }
    }

    #[test]
    fn other_layouts_and_oversized_results_are_not_rewritten() {
        let one = stream(5, 3, 2, false, 0);
        let good = state(&one);
        let padded = with_earlier_cells(&good, 0, ANY).expect("rewritten");
        assert_eq!(with_earlier_cells(&good, 0, padded.len() - 1), None, "over the limit");
        assert_eq!(with_earlier_cells(&good, 5, ANY).as_ref(), Some(&good), "nothing missing");
        assert_eq!(with_earlier_cells(&good, 6, ANY), None, "a position before the first");
        assert_eq!(with_earlier_cells(&good[..good.len() - 5], 0, ANY), None, "cut short");
        assert_eq!(with_earlier_cells(&[good.clone(), vec![0]].concat(), 0, ANY), None, "trailing bytes");
        let meta = 16 + 4;
        let mut gap = good.clone();
        gap[meta + CELL] = 9;
        assert_eq!(with_earlier_cells(&gap, 0, ANY), None, "positions not consecutive");
        let mut shared = good.clone();
        shared[meta + 4] = 2;
        assert_eq!(with_earlier_cells(&shared, 0, ANY), None, "a cell of two sequences");
        let mut two_streams = [0xaf14_3cd8u32, 1, 2].map(u32::to_le_bytes).concat();
        two_streams.extend([one.clone(), one.clone()].concat());
        assert_eq!(with_earlier_cells(&two_streams, 0, ANY), None, "cells in two streams");
        // The second layer's values left out, as llama.cpp does for a layer without them.
        let values = 4 + 8 + 3 * 4;
        let without = state(&one[..one.len() - values]);
        assert_eq!(with_earlier_cells(&without, 0, ANY), None, "a layer without values");
        let transposed = stream(5, 3, 2, true, 0);
        let without = state(&transposed[..transposed.len() - (12 + 3 * 3 * 2)]);
        assert_eq!(with_earlier_cells(&without, 0, ANY), None, "a layer without transposed values");
    }
}
