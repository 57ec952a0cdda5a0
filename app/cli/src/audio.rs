//! What an audio file says about itself: its length, read with Symphonia's demuxers (WAV, FLAC,
//! MP3). Only the container is read: a length from the stream's header when it has one (WAV,
//! FLAC, MP3 with a Xing/Info header), else the sum of its packets' durations (frames are
//! counted, never decoded).

use anyhow::{anyhow, bail, Context};
use std::path::Path;
use symphonia::core::{
    errors::Error as AudioError, formats::FormatOptions, io::MediaSourceStream, meta::MetadataOptions,
    probe::Hint, units::TimeBase,
};

/// The formats this build reads, for messages.
pub const FORMATS: &str = "WAV, FLAC or MP3";

/// How far a length given by hand may be from the file's and still be taken as agreeing with
/// it: people round (3:25 for 3:24.6).
pub const DURATION_TOLERANCE_MS: i64 = 1_000;

/// The length of the audio in `path`, in milliseconds (rounded down, at least 1).
pub fn duration_ms(path: &Path) -> anyhow::Result<i64> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the audio file {}", path.display()))?;
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(extension) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(extension);
    }
    let not_audio = |e: AudioError| anyhow!("{} is not a {FORMATS} audio file ({e})", path.display());
    let probed = symphonia::default::get_probe()
        .format(&hint, stream, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(not_audio)?;
    let mut format = probed.format;
    let track = format.default_track().ok_or_else(|| anyhow!("{} holds no audio track", path.display()))?;
    let (id, params) = (track.id, track.codec_params.clone());
    let time_base = match (params.time_base, params.sample_rate) {
        (Some(base), _) => base,
        (None, Some(rate)) => TimeBase::new(1, rate),
        (None, None) => bail!("{} does not say its sample rate", path.display()),
    };
    let frames = match params.n_frames {
        Some(frames) => frames,
        None => {
            // No length in the header: the end of the last packet.
            let mut end = 0u64;
            loop {
                match format.next_packet() {
                    Ok(packet) if packet.track_id() == id => end = end.max(packet.ts() + packet.dur()),
                    Ok(_) => {}
                    Err(AudioError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(not_audio(e)),
                }
            }
            end
        }
    };
    let ms = u128::from(frames) * 1_000 * u128::from(time_base.numer) / u128::from(time_base.denom.max(1));
    if ms == 0 {
        bail!("{} holds no audio", path.display());
    }
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// The length to record for a track with `file`, given the one typed (`given`), if any: the
/// file's, which a typed length must agree with.
pub fn track_duration(file: &Path, given: Option<i64>) -> anyhow::Result<i64> {
    let measured = duration_ms(file)?;
    match given {
        Some(given) if (given - measured).abs() > DURATION_TOLERANCE_MS => bail!(
            "--duration {} contradicts the audio file, which lasts {}: leave --duration out to use the file's",
            crate::cli::format_position(given),
            crate::cli::format_position(measured)
        ),
        _ => Ok(measured),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trackflow_tests::audio as fixtures;

    fn written(name: &str, bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        (dir, path)
    }

    #[test]
    fn the_length_is_read_from_wav_flac_and_mp3() {
        let (_wav, wav) = written("take.wav", &fixtures::wav(2_500));
        assert_eq!(duration_ms(&wav).expect("wav"), 2_500);
        let (_flac, flac) = written("take.flac", &fixtures::flac(44_100 * 3));
        assert_eq!(duration_ms(&flac).expect("flac"), 3_000);
        let (_mp3, mp3) = written("take.mp3", &fixtures::mp3(100));
        // 100 frames of 1152 samples at 44.1 kHz: 2.612 s.
        assert_eq!(duration_ms(&mp3).expect("mp3"), 100 * 1152 * 1000 / 44_100);
    }

    #[test]
    fn what_is_not_audio_is_refused_by_name() {
        let (_dir, path) = written("notes.wav", b"RIFF and some text");
        let error = duration_ms(&path).expect_err("not audio").to_string();
        assert!(error.contains("notes.wav") && error.contains("is not a WAV, FLAC or MP3"), "{error}");
        let (_dir, silent) = written("empty.wav", &fixtures::wav(0));
        assert!(duration_ms(&silent).expect_err("no samples").to_string().contains("holds no audio"));
    }

    #[test]
    fn a_typed_length_must_agree_with_the_file() {
        let (_dir, path) = written("take.wav", &fixtures::wav(72_300));
        assert_eq!(track_duration(&path, None).expect("the file's"), 72_300);
        assert_eq!(
            track_duration(&path, Some(72_000)).expect("rounded"),
            72_300,
            "the file's length is kept"
        );
        let error = track_duration(&path, Some(90_000)).expect_err("contradicts").to_string();
        assert!(error.contains("--duration 1:30 contradicts") && error.contains("lasts 1:12.300"), "{error}");
    }
}
