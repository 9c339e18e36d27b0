//! Packed ternary weights: the byte layouts that generated kernels (Cranelift JIT,
//! LLVM AOT, C / HLS / OpenCL printers) read.
//!
//! The input is the ternary codes (−1, 0, +1) of one weight matrix with `rows` output
//! channels and `cols = (c/groups)·k·k` inputs per row (OIHW flattened, row-major),
//! plus [`Scales`]: one scale for the layer or one per output row. Weight `(r, c)`
//! stands for `scale(r) · code(r, c)`. Two formats, both row-major, each row padded
//! with 0 codes so that a row starts on a byte (or word) boundary and no kernel
//! needs a tail case inside a packed unit:
//!
//! # 2-bit format ([`Packed2`], 2 bits a weight, 16× smaller than f32)
//!
//! - 4 codes a byte, little-endian within the byte: code `j` of a 4-code group sits
//!   in bits `2j..2j+1`. Encoding: `0b00` = 0, `0b01` = +1, `0b11` = −1; `0b10` is
//!   invalid (decoding it is an error). Read as bits: bit 0 = "nonzero", bit 1 =
//!   "negative", so `t = lo − 2·hi` for every valid code.
//! - Each row is padded to a multiple of 16 codes, i.e. `row_bytes = 4·⌈cols/16⌉`,
//!   and row `r` starts at byte `r·row_bytes`, a multiple of 4. Why: a kernel loads
//!   a row 32 bits at a time (`u32::from_le_bytes`, or one SIMD lane of a wider
//!   vector load), each load is exactly 16 codes, no word straddles two rows, and
//!   the code of column `c` is bits `2(c%16)..` of word `c/16` of its row. Offsets
//!   are multiples of 4 from the start of `data`; a `Vec<u8>` itself only promises
//!   byte alignment, so kernels use unaligned loads (as fast as aligned ones on
//!   x86_64 and aarch64) or copy into an aligned buffer; emitted constants are
//!   aligned by the backend. Big-endian targets must read the words little-endian.
//! - Padding codes are 0 (checked by [`Packed2::validate`]), so a kernel may run the
//!   last word in full: padded columns add nothing (it must still be allowed to read
//!   the activations there, or mask them).
//! - [`Packed2::bitplanes`] gives the multiply-free decomposition: per row two
//!   bitmasks in `u32` words (`⌈cols/32⌉` words a row, bit `i%32` of word `i/32` is
//!   column `i`), `plus` (code +1) and `minus` (code −1), so a dot product is
//!   `Σ x[plus] − Σ x[minus]`. [`split_word`] does the same for one packed word, for
//!   kernels that split on the fly.
//!
//! # Base-3 format ([`Packed3`], 1.6 bits a weight, 20× smaller than f32)
//!
//! - 5 trits a byte: byte = `Σ_{j<5} (t_j + 1)·3^j` where `t_j` is code `j` of a
//!   5-code group, so a byte is `0..=242`; `243..=255` are invalid. An all-zero
//!   group is `121` (`0x79`), not `0x00`.
//! - Each row is padded with 0 codes to a multiple of 5, `row_bytes = ⌈cols/5⌉`, and
//!   row `r` starts at byte `r·row_bytes`.
//! - Kernels decode with the 243-entry table [`TRIT_LUT`] (byte → 5 codes), as
//!   bitnet.cpp-style lookup kernels do.
//!
//! # Worked example
//!
//! Two rows of 6 codes, `[+1, −1, 0, +1, 0, −1]` and `[0, 0, 0, 0, 0, +1]`:
//!
//! ```text
//! 2-bit, row_bytes = 4 (6 codes padded to 16):
//!   row 0 byte 0: codes +1 −1 0 +1   → patterns 01 11 00 01 → MSB first 0b01_00_11_01 = 4D
//!   row 0 byte 1: codes 0 −1 pad pad → patterns 00 11 00 00 → MSB first 0b00_00_11_00 = 0C
//!   data = 4D 0C 00 00 | 00 04 00 00      (row 0 as a LE u32: 0x00000C4D)
//!   bitplanes: row 0 plus = 0b001001 = 0x09, minus = 0b100010 = 0x22
//!              row 1 plus = 0x20,            minus = 0x00
//! base-3, row_bytes = 2 (6 codes padded to 10):
//!   row 0 byte 0: t = +1 −1 0 +1 0 → digits 2 0 1 2 1 → 2 + 0·3 + 1·9 + 2·27 + 1·81 = 146 = 92
//!   row 0 byte 1: t = −1 pad×4     → digits 0 1 1 1 1 → 0 + 3 + 9 + 27 + 81       = 120 = 78
//!   data = 92 78 | 79 7A
//! ```
//!
//! ```
//! use ternc_passes::pack::{Packed2, Packed3, Scales};
//! let codes = [1, -1, 0, 1, 0, -1, 0, 0, 0, 0, 0, 1];
//! let p2 = Packed2::pack(&codes, 2, 6, Scales::Layer(0.5)).unwrap();
//! assert_eq!(p2.data, [0x4D, 0x0C, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00]);
//! assert_eq!(p2.bitplanes(), (vec![0x09, 0x20], vec![0x22, 0x00]));
//! let p3 = Packed3::pack(&codes, 2, 6, Scales::Layer(0.5)).unwrap();
//! assert_eq!(p3.data, [0x92, 0x78, 0x79, 0x7A]);
//! assert_eq!(p3.unpack().unwrap(), codes);
//! ```

/// Scale of the ternary codes: one for the whole layer or one per output row.
#[derive(Debug, Clone, PartialEq)]
pub enum Scales {
    Layer(f32),
    Channel(Vec<f32>),
}

impl Scales {
    /// The scale of output row `row`.
    ///
    /// # Panics
    /// For `Channel` scales, if `row` is out of range.
    pub fn get(&self, row: usize) -> f32 {
        match self {
            Scales::Layer(s) => *s,
            Scales::Channel(v) => v[row],
        }
    }

    /// How many f32 values these scales store (1, or one per row).
    pub fn count(&self) -> usize {
        match self {
            Scales::Layer(_) => 1,
            Scales::Channel(v) => v.len(),
        }
    }

    fn check(&self, rows: usize) -> Result<(), PackError> {
        match self {
            Scales::Channel(v) if v.len() != rows => {
                Err(PackError::ScaleCount { expected: rows, got: v.len() })
            }
            _ => Ok(()),
        }
    }
}

/// Why codes could not be packed, or packed bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    #[error("a {rows}x{cols} weight matrix is too large to pack")]
    TooLarge { rows: usize, cols: usize },
    #[error("expected {expected} ternary codes ({rows} rows x {cols} columns), got {got}")]
    CodeCount { rows: usize, cols: usize, expected: usize, got: usize },
    #[error("code {value} at row {row}, column {col} is not a ternary code (-1, 0 or +1)")]
    BadCode { row: usize, col: usize, value: i8 },
    #[error("expected {expected} per-channel scales (one per output row), got {got}")]
    ScaleCount { expected: usize, got: usize },
    #[error("row_bytes is {got}, expected {expected} for {cols} columns")]
    RowBytes { cols: usize, expected: usize, got: usize },
    #[error("packed data holds {got} bytes, expected {expected} ({rows} rows of {row_bytes} bytes)")]
    DataLength { rows: usize, row_bytes: usize, expected: usize, got: usize },
    #[error("invalid 2-bit code 0b10 at row {row}, column {col}")]
    Invalid2Bit { row: usize, col: usize },
    #[error("byte {value} at row {row}, byte {byte} is not a base-3 group (0..=242)")]
    InvalidBase3 { row: usize, byte: usize, value: u8 },
    #[error("nonzero padding code at row {row}, column {col} (past the {cols} real columns)")]
    Padding { row: usize, col: usize, cols: usize },
}

/// Checks what both formats need of their input: length, code values, scale count.
fn check_input(codes: &[i8], rows: usize, cols: usize, scales: &Scales) -> Result<(), PackError> {
    let expected = rows.checked_mul(cols).ok_or(PackError::TooLarge { rows, cols })?;
    if codes.len() != expected {
        return Err(PackError::CodeCount { rows, cols, expected, got: codes.len() });
    }
    if let Some(i) = codes.iter().position(|t| !(-1..=1).contains(t)) {
        return Err(PackError::BadCode { row: i / cols, col: i % cols, value: codes[i] });
    }
    scales.check(rows)
}

/// Checks the public fields of a packed matrix against each other.
fn check_layout(
    rows: usize,
    cols: usize,
    row_bytes: usize,
    expected_row_bytes: usize,
    data: &[u8],
    scales: &Scales,
) -> Result<(), PackError> {
    if row_bytes != expected_row_bytes {
        return Err(PackError::RowBytes { cols, expected: expected_row_bytes, got: row_bytes });
    }
    let expected = rows.checked_mul(row_bytes).ok_or(PackError::TooLarge { rows, cols })?;
    if data.len() != expected {
        return Err(PackError::DataLength { rows, row_bytes, expected, got: data.len() });
    }
    scales.check(rows)
}

/// Byte size of `rows` rows of `row_bytes` bytes, or `TooLarge`.
fn data_len(rows: usize, cols: usize, row_bytes: usize) -> Result<usize, PackError> {
    rows.checked_mul(row_bytes).ok_or(PackError::TooLarge { rows, cols })
}

/// Row-major dequantization shared by both formats.
fn dequantize_with(rows: usize, cols: usize, scales: &Scales, code: impl Fn(usize, usize) -> i8) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let s = scales.get(r);
        out.extend((0..cols).map(|c| s * code(r, c) as f32));
    }
    out
}

// ---------------------------------------------------------------------------
// 2-bit format

/// The 2-bit pattern of a ternary code (`0b00`, `0b01`, `0b11`), `None` outside −1..=1.
pub const fn encode2(code: i8) -> Option<u8> {
    match code {
        0 => Some(0b00),
        1 => Some(0b01),
        -1 => Some(0b11),
        _ => None,
    }
}

/// The ternary code of a 2-bit pattern (only the low 2 bits are read); `None` for `0b10`.
pub const fn decode2(bits: u8) -> Option<i8> {
    match bits & 0b11 {
        0b00 => Some(0),
        0b01 => Some(1),
        0b11 => Some(-1),
        _ => None,
    }
}

/// Gathers the even bits of `x` (bits 0, 2, .., 30) into bits 0..16.
const fn even_bits(x: u32) -> u32 {
    let mut x = x & 0x5555_5555;
    x = (x | (x >> 1)) & 0x3333_3333;
    x = (x | (x >> 2)) & 0x0f0f_0f0f;
    x = (x | (x >> 4)) & 0x00ff_00ff;
    (x | (x >> 8)) & 0x0000_ffff
}

/// Splits one packed 2-bit word (16 codes, read little-endian from a row) into its
/// `(plus, minus)` bitmasks: bit `j` of `plus` is set where code `j` is +1, of
/// `minus` where it is −1. An invalid `0b10` code sets neither bit.
///
/// With `lo = w & 0x5555_5555` ("nonzero") and `hi = (w >> 1) & 0x5555_5555`
/// ("negative"), `plus = lo & !hi`, `minus = lo & hi`, each compressed from the
/// even bit positions to 16 bits (a `pext` on x86 BMI2).
pub const fn split_word(word: u32) -> (u16, u16) {
    let lo = word & 0x5555_5555;
    let hi = (word >> 1) & 0x5555_5555;
    (even_bits(lo & !hi) as u16, even_bits(lo & hi) as u16)
}

/// A ternary weight matrix at 2 bits a weight; see the [module docs](self) for the layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed2 {
    /// Output channels.
    pub rows: usize,
    /// Real (unpadded) codes a row.
    pub cols: usize,
    /// Bytes a row, `4·⌈cols/16⌉`.
    pub row_bytes: usize,
    /// `rows · row_bytes` bytes, row-major.
    pub data: Vec<u8>,
    pub scales: Scales,
}

impl Packed2 {
    /// Codes a byte holds.
    pub const CODES_PER_BYTE: usize = 4;
    /// Rows are padded to a multiple of this many codes (one 32-bit word).
    pub const ROW_ALIGN_CODES: usize = 16;

    /// Bytes a packed row of `cols` codes takes: `4·⌈cols/16⌉`.
    pub const fn row_bytes_for(cols: usize) -> usize {
        cols.div_ceil(Self::ROW_ALIGN_CODES) * 4
    }

    /// Packs `rows × cols` ternary codes (row-major) with their scales.
    pub fn pack(codes: &[i8], rows: usize, cols: usize, scales: Scales) -> Result<Packed2, PackError> {
        check_input(codes, rows, cols, &scales)?;
        let row_bytes = Self::row_bytes_for(cols);
        let mut data = vec![0u8; data_len(rows, cols, row_bytes)?];
        if cols > 0 {
            for (row, dst) in codes.chunks(cols).zip(data.chunks_mut(row_bytes)) {
                for (c, &t) in row.iter().enumerate() {
                    // check_input has rejected every code outside −1..=1
                    let bits = encode2(t).unwrap_or(0);
                    dst[c / 4] |= bits << (2 * (c % 4));
                }
            }
        }
        Ok(Packed2 { rows, cols, row_bytes, data, scales })
    }

    /// Checks that the fields agree (row_bytes, data length, scale count), that no
    /// code is `0b10`, and that every padding code is 0.
    pub fn validate(&self) -> Result<(), PackError> {
        check_layout(
            self.rows,
            self.cols,
            self.row_bytes,
            Self::row_bytes_for(self.cols),
            &self.data,
            &self.scales,
        )?;
        if self.row_bytes == 0 {
            return Ok(());
        }
        for (row, bytes) in self.data.chunks(self.row_bytes).enumerate() {
            for (i, &b) in bytes.iter().enumerate() {
                for j in 0..4 {
                    let col = 4 * i + j;
                    match decode2(b >> (2 * j)) {
                        None => return Err(PackError::Invalid2Bit { row, col }),
                        Some(t) if t != 0 && col >= self.cols => {
                            return Err(PackError::Padding { row, col, cols: self.cols })
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// The codes, `rows × cols` row-major without padding; an error if the packed
    /// bytes are not a valid 2-bit matrix (see [`validate`](Self::validate)).
    pub fn unpack(&self) -> Result<Vec<i8>, PackError> {
        self.validate()?;
        let mut out = Vec::with_capacity(self.rows * self.cols);
        for r in 0..self.rows {
            out.extend((0..self.cols).map(|c| self.code(r, c)));
        }
        Ok(out)
    }

    /// The packed bytes of row `row` (`row_bytes` of them).
    pub fn row(&self, row: usize) -> &[u8] {
        &self.data[row * self.row_bytes..(row + 1) * self.row_bytes]
    }

    /// The code at `(row, col)`. An invalid `0b10` pattern reads as 0, as in
    /// [`bitplanes`](Self::bitplanes); [`unpack`](Self::unpack) reports it instead.
    ///
    /// # Panics
    /// If `row`/`col` is out of range, or `data` is shorter than the layout says.
    pub fn code(&self, row: usize, col: usize) -> i8 {
        check_index(row, col, self.rows, self.cols);
        let b = self.data[row * self.row_bytes + col / 4];
        decode2(b >> (2 * (col % 4))).unwrap_or(0)
    }

    /// Bytes of packed codes plus the scales as f32.
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * self.scales.count()
    }

    /// `scale(row) · code`, `rows × cols` row-major without padding.
    ///
    /// # Panics
    /// If the fields disagree (see [`validate`](Self::validate)).
    pub fn dequantize(&self) -> Vec<f32> {
        dequantize_with(self.rows, self.cols, &self.scales, |r, c| self.code(r, c))
    }

    /// `u32` words a row of each bitplane takes: `⌈cols/32⌉`.
    pub fn plane_words(&self) -> usize {
        self.cols.div_ceil(32)
    }

    /// The `(plus, minus)` bitplanes, [`plane_words`](Self::plane_words) `u32` words
    /// a row, row-major: bit `i % 32` of word `i / 32` of a row is set in `plus`
    /// where code `i` is +1 and in `minus` where it is −1; padding bits are 0. A
    /// multiply-free dot product of a row with `x` is `Σ_{plus} x[i] − Σ_{minus} x[i]`,
    /// and `code = plus − minus` bit by bit. An invalid `0b10` code sets neither bit.
    ///
    /// # Panics
    /// If the fields disagree (see [`validate`](Self::validate)).
    pub fn bitplanes(&self) -> (Vec<u32>, Vec<u32>) {
        let words = self.plane_words();
        let mut plus = vec![0u32; self.rows * words];
        let mut minus = vec![0u32; self.rows * words];
        if words == 0 {
            return (plus, minus);
        }
        for r in 0..self.rows {
            for (k, w) in self.row(r).chunks_exact(4).enumerate() {
                let (p, m) = split_word(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
                let shift = 16 * (k % 2);
                plus[r * words + k / 2] |= (p as u32) << shift;
                minus[r * words + k / 2] |= (m as u32) << shift;
            }
        }
        (plus, minus)
    }
}

// ---------------------------------------------------------------------------
// Base-3 format

/// The 243-entry decode table of the base-3 format: `TRIT_LUT[b]` is the 5 codes
/// (code `j` at index `j`) of byte `b`, for `b` in `0..=242`.
pub static TRIT_LUT: [[i8; 5]; 243] = build_trit_lut();

const fn build_trit_lut() -> [[i8; 5]; 243] {
    let mut lut = [[0i8; 5]; 243];
    let mut b = 0;
    while b < 243 {
        let mut v = b;
        let mut j = 0;
        while j < 5 {
            lut[b][j] = (v % 3) as i8 - 1;
            v /= 3;
            j += 1;
        }
        b += 1;
    }
    lut
}

/// The byte of 5 codes (`Σ (t_j+1)·3^j`), `None` if a code is outside −1..=1.
pub fn encode_trits(trits: [i8; 5]) -> Option<u8> {
    let mut v = 0u8;
    for &t in trits.iter().rev() {
        if !(-1..=1).contains(&t) {
            return None;
        }
        v = v * 3 + (t + 1) as u8;
    }
    Some(v)
}

/// The 5 codes of a byte, `None` for `243..=255`.
pub fn decode_trits(byte: u8) -> Option<[i8; 5]> {
    TRIT_LUT.get(byte as usize).copied()
}

/// A ternary weight matrix at 5 codes a byte (1.6 bits a weight); see the
/// [module docs](self) for the layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Packed3 {
    /// Output channels.
    pub rows: usize,
    /// Real (unpadded) codes a row.
    pub cols: usize,
    /// Bytes a row, `⌈cols/5⌉`.
    pub row_bytes: usize,
    /// `rows · row_bytes` bytes, row-major, each `0..=242`.
    pub data: Vec<u8>,
    pub scales: Scales,
}

impl Packed3 {
    /// Codes a byte holds.
    pub const CODES_PER_BYTE: usize = 5;

    /// Bytes a packed row of `cols` codes takes: `⌈cols/5⌉`.
    pub const fn row_bytes_for(cols: usize) -> usize {
        cols.div_ceil(Self::CODES_PER_BYTE)
    }

    /// Packs `rows × cols` ternary codes (row-major) with their scales.
    pub fn pack(codes: &[i8], rows: usize, cols: usize, scales: Scales) -> Result<Packed3, PackError> {
        check_input(codes, rows, cols, &scales)?;
        let row_bytes = Self::row_bytes_for(cols);
        let mut data = Vec::with_capacity(data_len(rows, cols, row_bytes)?);
        if cols > 0 {
            for row in codes.chunks(cols) {
                for group in row.chunks(5) {
                    let mut trits = [0i8; 5];
                    trits[..group.len()].copy_from_slice(group);
                    // check_input has rejected every code outside −1..=1
                    data.push(encode_trits(trits).unwrap_or(121));
                }
            }
        }
        Ok(Packed3 { rows, cols, row_bytes, data, scales })
    }

    /// Checks that the fields agree (row_bytes, data length, scale count), that every
    /// byte is `0..=242`, and that every padding code is 0.
    pub fn validate(&self) -> Result<(), PackError> {
        check_layout(
            self.rows,
            self.cols,
            self.row_bytes,
            Self::row_bytes_for(self.cols),
            &self.data,
            &self.scales,
        )?;
        if self.row_bytes == 0 {
            return Ok(());
        }
        for (row, bytes) in self.data.chunks(self.row_bytes).enumerate() {
            for (byte, &value) in bytes.iter().enumerate() {
                let trits = decode_trits(value).ok_or(PackError::InvalidBase3 { row, byte, value })?;
                for (j, &t) in trits.iter().enumerate() {
                    let col = 5 * byte + j;
                    if t != 0 && col >= self.cols {
                        return Err(PackError::Padding { row, col, cols: self.cols });
                    }
                }
            }
        }
        Ok(())
    }

    /// The codes, `rows × cols` row-major without padding; an error if the packed
    /// bytes are not a valid base-3 matrix (see [`validate`](Self::validate)).
    pub fn unpack(&self) -> Result<Vec<i8>, PackError> {
        self.validate()?;
        let mut out = Vec::with_capacity(self.rows * self.cols);
        if self.row_bytes == 0 {
            return Ok(out);
        }
        for bytes in self.data.chunks(self.row_bytes) {
            let row = bytes.iter().flat_map(|&b| TRIT_LUT[b as usize]);
            out.extend(row.take(self.cols));
        }
        Ok(out)
    }

    /// The packed bytes of row `row` (`row_bytes` of them).
    pub fn row(&self, row: usize) -> &[u8] {
        &self.data[row * self.row_bytes..(row + 1) * self.row_bytes]
    }

    /// The code at `(row, col)`. An invalid byte (`243..=255`) reads as 0;
    /// [`unpack`](Self::unpack) reports it instead.
    ///
    /// # Panics
    /// If `row`/`col` is out of range, or `data` is shorter than the layout says.
    pub fn code(&self, row: usize, col: usize) -> i8 {
        check_index(row, col, self.rows, self.cols);
        let b = self.data[row * self.row_bytes + col / 5];
        decode_trits(b).map_or(0, |t| t[col % 5])
    }

    /// Bytes of packed codes plus the scales as f32.
    pub fn bytes(&self) -> usize {
        self.data.len() + 4 * self.scales.count()
    }

    /// `scale(row) · code`, `rows × cols` row-major without padding.
    ///
    /// # Panics
    /// If the fields disagree (see [`validate`](Self::validate)).
    pub fn dequantize(&self) -> Vec<f32> {
        dequantize_with(self.rows, self.cols, &self.scales, |r, c| self.code(r, c))
    }
}

/// Weight storage of a `rows × cols` ternary matrix, in bytes: `(f32, 2-bit,
/// base-3)`, row padding included, scales excluded (they add 4 bytes a layer, or
/// 4 a row with per-channel scales, to both packed formats). Saturates instead of
/// overflowing.
pub fn size_report(rows: usize, cols: usize) -> (usize, usize, usize) {
    (
        rows.saturating_mul(cols).saturating_mul(4),
        rows.saturating_mul(Packed2::row_bytes_for(cols)),
        rows.saturating_mul(Packed3::row_bytes_for(cols)),
    )
}

/// Panics with a clear message when `(row, col)` is outside a `rows x cols` matrix.
fn check_index(row: usize, col: usize, rows: usize, cols: usize) {
    assert!(row < rows && col < cols, "code ({row}, {col}) out of range for a {rows}x{cols} matrix");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tiny deterministic LCG (Knuth's MMIX constants), top bits out.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u32 {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (self.0 >> 33) as u32
        }
        fn code(&mut self) -> i8 {
            (self.next() % 3) as i8 - 1
        }
        fn codes(&mut self, n: usize) -> Vec<i8> {
            (0..n).map(|_| self.code()).collect()
        }
        fn scale(&mut self) -> f32 {
            (self.next() % 1000) as f32 / 250.0 - 2.0
        }
    }

    const SHAPES: &[(usize, usize)] = &[
        (0, 0),
        (0, 7),
        (3, 0),
        (1, 1),
        (3, 1),
        (1, 4),
        (2, 5),
        (2, 6),
        (4, 9),
        (2, 15),
        (2, 16),
        (2, 17),
        (5, 27),
        (5, 31),
        (4, 32),
        (3, 33),
        (3, 48),
        (7, 63),
        (6, 64),
        (2, 65),
        (16, 147),
        (8, 288),
        (2, 1153),
    ];

    fn word(bytes: &[u8]) -> u32 {
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    }

    #[test]
    fn hand_worked_2bit() {
        // row 0: +1 −1 0 +1 | 0 −1 (pad ×10)
        //   byte 0: code0 +1 → 01 (bits 0-1), code1 −1 → 11 (bits 2-3),
        //           code2 0 → 00 (bits 4-5), code3 +1 → 01 (bits 6-7): 0b0100_1101 = 0x4D
        //   byte 1: code4 0 → 00, code5 −1 → 11 (bits 2-3): 0b0000_1100 = 0x0C
        //   bytes 2, 3: padding = 0x00
        // row 1: 0 0 0 0 | 0 +1: byte 1 = code5 +1 → 01 at bits 2-3 = 0x04
        let codes = [1, -1, 0, 1, 0, -1, 0, 0, 0, 0, 0, 1];
        let p = Packed2::pack(&codes, 2, 6, Scales::Layer(1.0)).unwrap();
        assert_eq!(p.row_bytes, 4);
        assert_eq!(p.data, [0x4D, 0x0C, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00]);
        assert_eq!(word(p.row(0)), 0x0000_0C4D);
        assert_eq!(p.unpack().unwrap(), codes);
        // plus: cols 0, 3 → 0b1001; minus: cols 1, 5 → 0b10_0010; row 1 plus: col 5
        assert_eq!(p.bitplanes(), (vec![0x09, 0x20], vec![0x22, 0x00]));

        // 16 codes exactly: one word, no padding.
        // +1 ×4 → 0b01010101 = 0x55; −1 ×4 → 0xFF; 0 ×4 → 0x00; (+1, −1, 0, 0) → 0b0000_1101 = 0x0D
        let row: Vec<i8> = [[1; 4], [-1; 4], [0; 4], [1, -1, 0, 0]].concat();
        let p = Packed2::pack(&row, 1, 16, Scales::Layer(1.0)).unwrap();
        assert_eq!(p.data, [0x55, 0xFF, 0x00, 0x0D]);
        assert_eq!(p.bitplanes(), (vec![0x100F], vec![0x20F0]));

        // 17 codes: a second word for the 17th code (−1 → 0x03), plane bit 16
        let mut row17 = row.clone();
        row17.push(-1);
        let p = Packed2::pack(&row17, 1, 17, Scales::Layer(1.0)).unwrap();
        assert_eq!(p.row_bytes, 8);
        assert_eq!(p.data, [0x55, 0xFF, 0x00, 0x0D, 0x03, 0x00, 0x00, 0x00]);
        assert_eq!(p.bitplanes(), (vec![0x100F], vec![0x0001_20F0]));

        // one code
        let p = Packed2::pack(&[-1], 1, 1, Scales::Layer(1.0)).unwrap();
        assert_eq!(p.data, [0x03, 0x00, 0x00, 0x00]);
    }

    #[test]
    fn hand_worked_base3() {
        // row 0: +1 −1 0 +1 0 | −1 (pad ×4)
        //   byte 0: digits (t+1) = 2 0 1 2 1 → 2 + 0·3 + 1·9 + 2·27 + 1·81 = 146 = 0x92
        //   byte 1: digits 0 1 1 1 1 → 0 + 3 + 9 + 27 + 81 = 120 = 0x78
        // row 1: 0 0 0 0 0 | +1: byte 0 = 1+3+9+27+81 = 121 = 0x79; byte 1 = 2+120 = 122 = 0x7A
        let codes = [1, -1, 0, 1, 0, -1, 0, 0, 0, 0, 0, 1];
        let p = Packed3::pack(&codes, 2, 6, Scales::Layer(1.0)).unwrap();
        assert_eq!(p.row_bytes, 2);
        assert_eq!(p.data, [0x92, 0x78, 0x79, 0x7A]);
        assert_eq!(p.unpack().unwrap(), codes);

        // extremes: all −1 → 0; all +1 → 2·(1+3+9+27+81) = 242 = 0xF2;
        // −1 0 +1 0 −1 → 0 + 3 + 18 + 27 + 0 = 48 = 0x30
        let row = [-1, -1, -1, -1, -1, 1, 1, 1, 1, 1, -1, 0, 1, 0, -1];
        let p = Packed3::pack(&row, 1, 15, Scales::Layer(1.0)).unwrap();
        assert_eq!(p.data, [0x00, 0xF2, 0x30]);

        // one code: +1 → 2 + 120 = 122; −1 → 120
        let p = Packed3::pack(&[1, -1], 2, 1, Scales::Layer(1.0)).unwrap();
        assert_eq!(p.data, [122, 120]);
    }

    #[test]
    fn round_trips() {
        let mut rng = Lcg(42);
        for &(rows, cols) in SHAPES {
            let codes = rng.codes(rows * cols);
            let layer = Scales::Layer(rng.scale());
            let channel = Scales::Channel((0..rows).map(|_| rng.scale()).collect());
            for scales in [layer, channel] {
                let p2 = Packed2::pack(&codes, rows, cols, scales.clone()).unwrap();
                let p3 = Packed3::pack(&codes, rows, cols, scales.clone()).unwrap();
                assert_eq!(p2.row_bytes % 4, 0);
                assert_eq!(p2.row_bytes * 4, cols.div_ceil(16) * 16);
                assert_eq!(p2.data.len(), rows * p2.row_bytes);
                assert_eq!(p3.row_bytes, cols.div_ceil(5));
                assert_eq!(p3.data.len(), rows * p3.row_bytes);
                assert!(p3.data.iter().all(|&b| b <= 242));
                p2.validate().unwrap();
                p3.validate().unwrap();
                assert_eq!(p2.unpack().unwrap(), codes, "2-bit {rows}x{cols}");
                assert_eq!(p3.unpack().unwrap(), codes, "base-3 {rows}x{cols}");
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(p2.code(r, c), codes[r * cols + c]);
                        assert_eq!(p3.code(r, c), codes[r * cols + c]);
                    }
                }
                let expected: Vec<f32> =
                    (0..rows * cols).map(|i| scales.get(i / cols) * codes[i] as f32).collect();
                assert_eq!(p2.dequantize(), expected);
                assert_eq!(p3.dequantize(), expected);
                assert_eq!(p2.bytes(), p2.data.len() + 4 * scales.count());
                assert_eq!(p3.bytes(), p3.data.len() + 4 * scales.count());
                let (_, b2, b3) = size_report(rows, cols);
                assert_eq!((b2, b3), (p2.data.len(), p3.data.len()));
                check_bitplanes(&p2, &codes);
            }
        }
    }

    fn check_bitplanes(p: &Packed2, codes: &[i8]) {
        let (plus, minus) = p.bitplanes();
        let words = p.plane_words();
        assert_eq!(words, p.cols.div_ceil(32));
        assert_eq!((plus.len(), minus.len()), (p.rows * words, p.rows * words));
        for r in 0..p.rows {
            for i in 0..words * 32 {
                let bit = |v: &[u32]| (v[r * words + i / 32] >> (i % 32)) & 1;
                let t = bit(&plus) as i8 - bit(&minus) as i8;
                assert!(bit(&plus) & bit(&minus) == 0);
                let want = if i < p.cols { codes[r * p.cols + i] } else { 0 };
                assert_eq!(t, want, "row {r} col {i}");
            }
        }
    }

    #[test]
    fn bitplane_dot_product_is_multiply_free_dot() {
        let mut rng = Lcg(7);
        let (rows, cols) = (5, 70);
        let codes = rng.codes(rows * cols);
        let x: Vec<f32> = (0..cols).map(|_| rng.scale()).collect();
        let p = Packed2::pack(&codes, rows, cols, Scales::Layer(1.0)).unwrap();
        let (plus, minus) = p.bitplanes();
        let words = p.plane_words();
        for r in 0..rows {
            // the kernel's view: adds where a plus bit is set, subtracts where a minus bit is
            let set = |plane: &[u32], i: usize| (plane[r * words + i / 32] >> (i % 32)) & 1 == 1;
            let (mut sum_p, mut sum_m) = (0.0f32, 0.0f32);
            for (i, &xi) in x.iter().enumerate() {
                if set(&plus, i) {
                    sum_p += xi;
                }
                if set(&minus, i) {
                    sum_m += xi;
                }
            }
            // the definition, in the same order of summation
            let (mut want_p, mut want_m) = (0.0f32, 0.0f32);
            for (&t, &xi) in codes[r * cols..(r + 1) * cols].iter().zip(&x) {
                match t {
                    1 => want_p += xi,
                    -1 => want_m += xi,
                    _ => {}
                }
            }
            assert_eq!(sum_p - sum_m, want_p - want_m);
        }
    }

    #[test]
    fn split_word_matches_per_code_decoding() {
        let mut rng = Lcg(3);
        for _ in 0..2000 {
            let w = rng.next() ^ (rng.next() << 16);
            let (p, m) = split_word(w);
            for j in 0..16 {
                let bits = ((w >> (2 * j)) & 3) as u8;
                let (pb, mb) = ((p >> j) & 1, (m >> j) & 1);
                match decode2(bits) {
                    Some(1) => assert_eq!((pb, mb), (1, 0)),
                    Some(-1) => assert_eq!((pb, mb), (0, 1)),
                    _ => assert_eq!((pb, mb), (0, 0)),
                }
                // bit 0 = nonzero, bit 1 = negative: t = lo − 2·hi for valid codes
                if let Some(t) = decode2(bits) {
                    assert_eq!(t, (bits & 1) as i8 - 2 * (bits >> 1) as i8);
                }
            }
        }
    }

    #[test]
    fn invalid_inputs_are_errors() {
        let s = || Scales::Layer(1.0);
        for (bad, packer) in [(2i8, 0), (-2, 0), (i8::MIN, 0), (i8::MAX, 0), (2, 1), (-2, 1)] {
            let codes = [0, 1, bad, -1];
            let want = PackError::BadCode { row: 1, col: 0, value: bad };
            let got = if packer == 0 {
                Packed2::pack(&codes, 2, 2, s()).map(|_| ())
            } else {
                Packed3::pack(&codes, 2, 2, s()).map(|_| ())
            };
            assert_eq!(got, Err(want));
        }
        for len in [0, 5, 7] {
            let codes = vec![0i8; len];
            let want = Err(PackError::CodeCount { rows: 2, cols: 3, expected: 6, got: len });
            assert_eq!(Packed2::pack(&codes, 2, 3, s()).map(|_| ()), want);
            assert_eq!(Packed3::pack(&codes, 2, 3, s()).map(|_| ()), want);
        }
        for n in [0, 1, 3] {
            let scales = Scales::Channel(vec![1.0; n]);
            let want = Err(PackError::ScaleCount { expected: 2, got: n });
            assert_eq!(Packed2::pack(&[0; 6], 2, 3, scales.clone()).map(|_| ()), want);
            assert_eq!(Packed3::pack(&[0; 6], 2, 3, scales).map(|_| ()), want);
        }
        let want = Err(PackError::TooLarge { rows: usize::MAX, cols: 2 });
        assert_eq!(Packed2::pack(&[], usize::MAX, 2, s()).map(|_| ()), want);
        assert_eq!(Packed3::pack(&[], usize::MAX, 2, s()).map(|_| ()), want);
        // rows = 0 is fine, and so is cols = 0
        assert!(Packed2::pack(&[], 0, 9, s()).unwrap().unpack().unwrap().is_empty());
        assert!(Packed3::pack(&[], 4, 0, Scales::Channel(vec![1.0; 4])).unwrap().data.is_empty());
    }

    #[test]
    fn invalid_packed_bytes_are_errors() {
        let codes = [1, -1, 0, 1, 0, -1, 0, 0, 0, 0, 0, 1];
        let good2 = Packed2::pack(&codes, 2, 6, Scales::Layer(2.0)).unwrap();
        let good3 = Packed3::pack(&codes, 2, 6, Scales::Layer(2.0)).unwrap();

        // 0b10 at row 1, col 2 (byte 4, bits 4-5), and in the padding
        let mut p = good2.clone();
        p.data[4] |= 0b10 << 4;
        assert_eq!(p.unpack(), Err(PackError::Invalid2Bit { row: 1, col: 2 }));
        assert_eq!(p.code(1, 2), 0); // reads as 0, never panics
        assert_eq!(p.dequantize()[8], 0.0);
        assert_eq!(p.bitplanes(), good2.bitplanes());
        let mut p = good2.clone();
        p.data[7] = 0b10 << 6;
        assert_eq!(p.unpack(), Err(PackError::Invalid2Bit { row: 1, col: 15 }));
        // a valid but nonzero padding code
        let mut p = good2.clone();
        p.data[1] |= 0b01 << 4;
        assert_eq!(p.unpack(), Err(PackError::Padding { row: 0, col: 6, cols: 6 }));

        // base-3 byte 250 at row 1, byte 0; then every invalid byte value
        let mut p = good3.clone();
        p.data[2] = 250;
        assert_eq!(p.unpack(), Err(PackError::InvalidBase3 { row: 1, byte: 0, value: 250 }));
        assert_eq!(p.code(1, 0), 0);
        assert_eq!(p.dequantize()[6..11], [0.0; 5]);
        for v in 243..=255u8 {
            let mut p = good3.clone();
            p.data[1] = v;
            assert!(matches!(p.unpack(), Err(PackError::InvalidBase3 { row: 0, byte: 1, .. })));
        }
        // padding trit t_1 of byte 1 set to +1: 120 + 3 = 123
        let mut p = good3.clone();
        p.data[1] = 123;
        assert_eq!(p.unpack(), Err(PackError::Padding { row: 0, col: 6, cols: 6 }));

        // inconsistent fields
        let mut p = good2.clone();
        p.data.pop();
        assert!(matches!(p.unpack(), Err(PackError::DataLength { expected: 8, got: 7, .. })));
        let mut p = good2.clone();
        p.row_bytes = 2;
        assert!(matches!(p.validate(), Err(PackError::RowBytes { expected: 4, got: 2, .. })));
        let mut p = good3.clone();
        p.scales = Scales::Channel(vec![1.0]);
        assert_eq!(p.validate(), Err(PackError::ScaleCount { expected: 2, got: 1 }));
        let mut p = good3;
        p.data.push(121);
        assert!(matches!(p.unpack(), Err(PackError::DataLength { expected: 4, got: 5, .. })));
    }

    #[test]
    fn dequantize_scales() {
        let codes = [1, -1, 0, 1, 0, -1, 0, 0, 0, 0, 0, 1];
        let layer = [0.5, -0.5, 0.0, 0.5, 0.0, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5];
        let channel = [3.0, -3.0, 0.0, 3.0, 0.0, -3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.25];
        let ch = Scales::Channel(vec![3.0, 0.25]);
        assert_eq!(Packed2::pack(&codes, 2, 6, Scales::Layer(0.5)).unwrap().dequantize(), layer);
        assert_eq!(Packed3::pack(&codes, 2, 6, Scales::Layer(0.5)).unwrap().dequantize(), layer);
        assert_eq!(Packed2::pack(&codes, 2, 6, ch.clone()).unwrap().dequantize(), channel);
        assert_eq!(Packed3::pack(&codes, 2, 6, ch.clone()).unwrap().dequantize(), channel);
        // bytes: data + scales as f32
        assert_eq!(Packed2::pack(&codes, 2, 6, Scales::Layer(0.5)).unwrap().bytes(), 8 + 4);
        assert_eq!(Packed3::pack(&codes, 2, 6, ch).unwrap().bytes(), 4 + 8);
    }

    #[test]
    fn trit_table_agrees_with_direct_decoding() {
        for b in 0..=255u8 {
            if b > 242 {
                assert_eq!(decode_trits(b), None);
                continue;
            }
            let direct: [i8; 5] = std::array::from_fn(|j| ((b as u32 / 3u32.pow(j as u32)) % 3) as i8 - 1);
            assert_eq!(TRIT_LUT[b as usize], direct, "byte {b}");
            assert_eq!(decode_trits(b), Some(direct));
            assert_eq!(encode_trits(direct), Some(b));
        }
        assert_eq!(TRIT_LUT[121], [0; 5]);
        assert_eq!(encode_trits([0, 0, 2, 0, 0]), None);
    }

    #[test]
    fn compression_ratios() {
        for (rows, k) in [(1, 1), (3, 2), (64, 9), (1024, 72)] {
            let (f, b2, _) = size_report(rows, 16 * k);
            assert_eq!(f, 16 * b2);
            let (f, _, b3) = size_report(rows, 5 * k);
            assert_eq!(f, 20 * b3);
            // the packers agree with the report
            let codes = vec![1i8; rows * 80];
            let p2 = Packed2::pack(&codes, rows, 80, Scales::Layer(1.0)).unwrap();
            let p3 = Packed3::pack(&codes, rows, 80, Scales::Layer(1.0)).unwrap();
            assert_eq!(rows * 80 * 4, 16 * p2.data.len());
            assert_eq!(rows * 80 * 4, 20 * p3.data.len());
        }
        // padding costs: 17 codes take two words, 6 codes take two bytes
        assert_eq!(size_report(1, 17), (68, 8, 4));
        assert_eq!(size_report(2, 6), (48, 8, 4));
        assert_eq!(size_report(0, 100), (0, 0, 0));
        assert_eq!(size_report(usize::MAX, 2).0, usize::MAX);
    }

    #[test]
    fn errors_read_well() {
        let e = Packed2::pack(&[0, 3], 1, 2, Scales::Layer(1.0)).unwrap_err();
        assert_eq!(e.to_string(), "code 3 at row 0, column 1 is not a ternary code (-1, 0 or +1)");
    }
}
