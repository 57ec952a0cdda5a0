//! Small audio files written by hand, so tests need no encoder: silence in WAV, FLAC and MP3.

/// A mono 16-bit PCM WAV file of `ms` milliseconds at 8 kHz.
pub fn wav(ms: u32) -> Vec<u8> {
    let rate = 8_000u32;
    let samples = rate * ms / 1_000;
    let data = samples * 2;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data.to_le_bytes());
    out.resize(out.len() + data as usize, 0);
    out
}

/// A FLAC stream whose STREAMINFO says `samples` samples at 44.1 kHz (mono, 16-bit),
/// followed by one frame of silence (a CONSTANT subframe): the length is in the header.
pub fn flac(samples: u64) -> Vec<u8> {
    let mut info = Vec::new();
    info.extend_from_slice(&4096u16.to_be_bytes()); // min block size
    info.extend_from_slice(&4096u16.to_be_bytes()); // max block size
    info.extend_from_slice(&[0; 3]); // min frame size: unknown
    info.extend_from_slice(&[0; 3]); // max frame size: unknown
                                     // 20 bits of sample rate, 3 of channels - 1 (0: mono), 5 of bits per sample - 1, 36 of
                                     // samples.
    let packed: u64 = (44_100u64 << 44) | (15 << 36) | (samples & 0xF_FFFF_FFFF);
    info.extend_from_slice(&packed.to_be_bytes());
    info.extend_from_slice(&[0; 16]); // MD5: unknown
    let mut out = b"fLaC".to_vec();
    out.push(0x80); // last metadata block, type 0 (STREAMINFO)
    out.extend_from_slice(&(info.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&info);
    // Frame header: sync and fixed blocking; 4096 samples, 44.1 kHz; mono, 16-bit; frame 0.
    let mut frame = vec![0xFF, 0xF8, 0xC9, 0x08, 0x00];
    frame.push(crc(&frame, 8, 0x07) as u8);
    // One CONSTANT subframe of value 0.
    frame.extend_from_slice(&[0x00, 0x00, 0x00]);
    let footer = crc(&frame, 16, 0x8005) as u16;
    frame.extend_from_slice(&footer.to_be_bytes());
    out.extend_from_slice(&frame);
    out
}

/// FLAC's CRCs: MSB first, initial value 0, over `bytes`.
fn crc(bytes: &[u8], width: u32, poly: u32) -> u32 {
    let top = 1 << (width - 1);
    let mask = if width == 32 { u32::MAX } else { (1 << width) - 1 };
    let mut crc = 0u32;
    for byte in bytes {
        crc ^= u32::from(*byte) << (width - 8);
        for _ in 0..8 {
            crc = if crc & top != 0 { (crc << 1) ^ poly } else { crc << 1 } & mask;
        }
    }
    crc
}

/// `frames` MPEG-1 Layer III frames of silence (128 kbit/s, 44.1 kHz, mono), with no
/// Xing header: the length is counted frame by frame, 1152 samples each.
pub fn mp3(frames: usize) -> Vec<u8> {
    let frame_len = 144 * 128_000 / 44_100; // 417 bytes without padding
    let mut out = Vec::with_capacity(frames * frame_len);
    for _ in 0..frames {
        // Sync, MPEG-1, Layer III, no CRC; 128 kbit/s, 44.1 kHz, no padding; mono.
        out.extend_from_slice(&[0xFF, 0xFB, 0x90, 0xC0]);
        out.resize(out.len() + frame_len - 4, 0);
    }
    out
}
