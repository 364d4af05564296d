//! Counts lines, words and bytes of the data element `text` (like `wc`), reading it in chunks so
//! that elements larger than the task's memory work. Result: `lines words bytes` as text.

const CHUNK: usize = 64 * 1024;

fn main() {
    idlegrid_guest::run(|| {
        let name = idlegrid_guest::param("element").unwrap_or_else(|| "text".to_string());
        let len = idlegrid_guest::element_len(&name)?;
        let mut buf = vec![0u8; CHUNK];
        let (mut lines, mut words, mut in_word) = (0u64, 0u64, false);
        let mut offset = 0u64;
        while offset < len {
            let n = idlegrid_guest::element_read_at(&name, offset, &mut buf)?;
            if n == 0 {
                break;
            }
            for &b in &buf[..n] {
                if b == b'\n' {
                    lines += 1;
                }
                let space = b.is_ascii_whitespace();
                if !space && !in_word {
                    words += 1;
                }
                in_word = !space;
            }
            offset += n as u64;
            idlegrid_guest::progress(offset as f32 / len as f32);
        }
        Ok(format!("{lines} {words} {offset}").into_bytes())
    });
}
