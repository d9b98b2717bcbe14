//! Transparent huge pages for the host memory llama.cpp allocates for a model: its weights (read
//! into memory, not mapped: [`crate::LoadConfig::try_mmap`]), its KV cache and compute buffers.
//!
//! A decode step reads every weight once. In 4 KiB pages the default model's 250 MB are some
//! 60,000 pages, far more than the TLB holds, so every step walks the page tables again (in a
//! virtual machine, two levels of them). Linux backs anonymous memory with 2 MiB pages where the
//! program asks for them (`madvise`, the setting most distributions ship) or everywhere (`always`);
//! llama.cpp does not ask. We do, for the anonymous mappings that appear while llama.cpp allocates
//! ([`around`]): they are advised `MADV_HUGEPAGE` (pages touched later come huge) and collapsed
//! with `MADV_COLLAPSE` (Linux 6.1: the pages already written move into huge pages now, whatever
//! the system setting but `never`). Measured on the default model: bench/README.md. Elsewhere
//! than Linux, or where the kernel refuses, nothing changes.

/// Runs `allocate` and advises the anonymous memory that is new afterwards (see the module). Best
/// effort: memory that takes addresses another thread freed meanwhile looks old and keeps its pages.
pub(super) fn around<T>(allocate: impl FnOnce() -> T) -> T {
    #[cfg(target_os = "linux")]
    {
        let before = anonymous();
        let made = allocate();
        if let Some(before) = before {
            advise_new(&before);
        }
        made
    }
    #[cfg(not(target_os = "linux"))]
    allocate()
}

/// A huge page.
#[cfg(target_os = "linux")]
const HUGE: usize = 2 << 20;

/// The private, writable, anonymous mappings of this process, as address ranges.
#[cfg(target_os = "linux")]
fn anonymous() -> Option<Vec<(usize, usize)>> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    Some(maps.lines().filter_map(parse).collect())
}

/// `start-end perms offset dev inode [path]`: the range of an anonymous `rw-p` mapping.
#[cfg(target_os = "linux")]
fn parse(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_ascii_whitespace();
    let (range, perms) = (fields.next()?, fields.next()?);
    let inode = fields.nth(2)?;
    if perms != "rw-p" || inode != "0" || fields.next().is_some() {
        return None;
    }
    address_range(range)
}

/// `start-end` in hexadecimal, as /proc/self/maps and smaps write a mapping's addresses.
#[cfg(target_os = "linux")]
fn address_range(field: &str) -> Option<(usize, usize)> {
    let (start, end) = field.split_once('-')?;
    Some((usize::from_str_radix(start, 16).ok()?, usize::from_str_radix(end, 16).ok()?))
}

/// The whole huge pages of `now`'s ranges that none of `before`'s ranges overlap.
#[cfg(target_os = "linux")]
fn new_huge_spans(before: &[(usize, usize)], now: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    for &(start, end) in now {
        let mut pieces = vec![(start, end)];
        for &(b0, b1) in before.iter().filter(|&&(b0, b1)| b0 < end && start < b1) {
            pieces = pieces
                .into_iter()
                .flat_map(|(p0, p1)| [(p0, p1.min(b0)), (p0.max(b1), p1)])
                .filter(|(p0, p1)| p0 < p1)
                .collect();
        }
        spans.extend(
            pieces.into_iter().map(|(p0, p1)| (p0.next_multiple_of(HUGE), p1 / HUGE * HUGE)).filter(|(p0, p1)| p0 < p1),
        );
    }
    spans
}

/// Advises the huge pages of the anonymous mappings that are not in `before`, then collapses
/// them on a thread of its own (copying what is written already takes about 2.5 ms a huge page
/// here: 0.6 s for the default model, which the load does not wait for).
#[cfg(target_os = "linux")]
fn advise_new(before: &[(usize, usize)]) {
    let Some(now) = anonymous() else { return };
    let spans: Vec<(usize, usize)> = new_huge_spans(before, &now)
        .into_iter()
        .filter(|&(start, end)| super::ffi::advise_huge_pages(start, end - start))
        .collect();
    if spans.is_empty() {
        return;
    }
    let collapse = move || {
        let started = std::time::Instant::now();
        let pages = spans.iter().flat_map(|&(start, end)| (start..end).step_by(HUGE));
        let (mut advised, mut collapsed) = (0, 0);
        for page in pages {
            advised += 1;
            // Pages not written yet (most of a fresh KV cache) are refused; they come huge
            // when first written.
            collapsed += usize::from(super::ffi::collapse_huge_pages(page, HUGE));
        }
        let ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(
            advised_mib = advised * 2,
            collapsed_mib = collapsed * 2,
            ms,
            "huge pages under llama.cpp's memory"
        );
    };
    if let Err(e) = std::thread::Builder::new().name("lms-huge-pages".into()).spawn(collapse) {
        tracing::debug!("huge pages advised, not collapsed: {e}");
    }
}

#[cfg(target_os = "linux")]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_whole_huge_pages_are_advised() {
        let m = HUGE;
        // A new mapping; one that grew from an old one; one inside an old one; a small one.
        let before = [(10 * m, 12 * m), (30 * m, 40 * m)];
        let now = [(0, 4 * m + 5), (10 * m, 15 * m), (30 * m, 40 * m), (50 * m, 50 * m + 4096)];
        assert_eq!(new_huge_spans(&before, &now), vec![(0, 4 * m), (12 * m, 15 * m)]);
        // Old ones on both sides of a new stretch.
        assert_eq!(new_huge_spans(&[(0, m), (5 * m, 6 * m)], &[(0, 6 * m)]), vec![(m, 5 * m)]);
    }

    /// `AnonHugePages` of the mapping holding address `at` (/proc/self/smaps), in KiB.
    fn huge_kib_at(at: usize) -> Option<u64> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = false;
        for line in smaps.lines() {
            // A mapping's header (`start-end perms ...`), then its `Key: value` lines.
            if let Some((start, end)) = line.split_ascii_whitespace().next().and_then(address_range) {
                inside = start <= at && at < end;
            } else if let Some(kib) = line.strip_prefix("AnonHugePages:").filter(|_| inside) {
                return kib.trim().trim_end_matches("kB").trim().parse().ok();
            }
        }
        None
    }

    #[test]
    fn new_memory_comes_in_huge_pages_where_linux_has_them() {
        // Past glibc's largest mmap threshold (32 MiB), zeroed: a fresh mapping, not written yet.
        let mut block = vec![0u8; 64 << 20];
        let at = block.as_ptr() as usize;
        // The process's mappings but the block's, as before it (a snapshot taken before the
        // allocation could hold the same addresses, freed by a test running beside this one).
        let before: Vec<(usize, usize)> =
            anonymous().expect("this process's mappings").into_iter().filter(|&(s, e)| !(s <= at && at < e)).collect();
        advise_new(&before);
        block.iter_mut().step_by(4096).for_each(|b| *b = 1);
        let enabled = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        if enabled.is_empty() || enabled.contains("[never]") {
            // This kernel or machine has no transparent huge pages to give.
            return;
        }
        // The advice splits the mapping at huge-page boundaries: the first whole one's part.
        let huge = huge_kib_at(at.next_multiple_of(HUGE)).expect("the block in smaps");
        assert!(huge > 0, "no huge page in the 64 MiB written after the advice ({enabled})");
    }

    #[test]
    fn anonymous_writable_mappings_are_read() {
        assert_eq!(parse("7f00a0000000-7f00a0200000 rw-p 00000000 00:00 0 "), Some((0x7f00a0000000, 0x7f00a0200000)));
        assert_eq!(parse("7f00a0000000-7f00a0200000 rw-p 00000000 00:00 0"), Some((0x7f00a0000000, 0x7f00a0200000)));
        assert_eq!(parse("7f00a0000000-7f00a0200000 r--p 00000000 00:00 0"), None);
        assert_eq!(parse("55d0-55e0 rw-p 00000000 00:00 0  [heap]"), None);
        assert_eq!(parse("7f00-7f10 rw-p 00001000 fd:01 123 /usr/lib/libc.so.6"), None);
        // Past glibc's largest mmap threshold (32 MiB): a mapping of its own.
        let block = vec![0u8; 64 << 20];
        let at = block.as_ptr() as usize;
        let mine = anonymous().expect("this process's mappings");
        assert!(mine.iter().any(|&(s, e)| s <= at && at < e), "{at:x} in {mine:x?}");
    }
}
