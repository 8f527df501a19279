// The codec addon (native/src/codec.cc, built by `npm run build:native` next to the eBPF
// addon but without libbpf, so processors load it too): CRC-32C and zstd for Kafka record
// batches, and madvise(MADV_PAGEOUT) for common/mapped-pages.ts. Loaded on first use, with an
// error that says how to build it.
import { nativeAddonPath, requireNativeAddon } from './native-addon.js';

export interface CodecAddon {
  /** CRC-32C (Castagnoli) of the whole buffer; `software` forces the table path (tests). */
  crc32c(buf: Uint8Array, software?: boolean): number;
  /** True when crc32c uses the CPU's crc32 instruction (SSE4.2). */
  readonly crc32cHardware: boolean;
  /** One zstd frame, compressed on the libuv thread pool. */
  zstdCompress(buf: Uint8Array, level: number): Promise<Buffer>;
  /** Any zstd frames (with or without a recorded content size), on the thread pool. */
  zstdDecompress(buf: Uint8Array): Promise<Buffer>;
  readonly zstdVersion: string;
  /** madvise(address, length, MADV_PAGEOUT); throws with `errno` set when the kernel refuses. */
  pageOut(address: bigint, length: number): void;
}

/** Where `npm run build:native` puts it; KTRAIL_CODEC_ADDON overrides. */
export const codecAddonPath: string = nativeAddonPath('KTRAIL_CODEC_ADDON', 'ktrail_codec.node');

let cached: CodecAddon | undefined;

export function loadCodecAddon(): CodecAddon {
  cached ??= requireNativeAddon<CodecAddon>(codecAddonPath, 'codec addon (Kafka zstd batches need it)');
  return cached;
}
