/**
 * Just enough of ELF to bundle a program's glibc: its requested loader (`PT_INTERP`) and the
 * libraries it links (`DT_NEEDED`). 64-bit little-endian only (x86_64, aarch64).
 *
 * @module
 */

/** What a dynamically linked executable asks of the system. */
export interface ElfLinkage {
  /** `e_machine`: 62 x86_64, 183 aarch64. */
  readonly machine: number;
  /** The loader path from `PT_INTERP`, or undefined for a static executable. */
  readonly interpreter?: string;
  /** The `DT_NEEDED` sonames, in order. */
  readonly needed: readonly string[];
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;

/** Reads a NUL-terminated string at `offset`. */
function cString(bytes: Uint8Array, offset: number): string {
  let end = offset;
  while (end < bytes.length && bytes[end] !== 0) end++;
  return new TextDecoder().decode(bytes.subarray(offset, end));
}

/** Parses the linkage of the ELF file `bytes`; throws for anything that is not 64-bit LE ELF. */
export function elfLinkage(bytes: Uint8Array): ElfLinkage {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 64 || view.getUint32(0) !== 0x7f454c46) throw new Error("not an ELF file");
  if (bytes[4] !== 2 || bytes[5] !== 1) throw new Error("not a 64-bit little-endian ELF file");
  const machine = view.getUint16(18, true);
  const phoff = Number(view.getBigUint64(32, true));
  const phentsize = view.getUint16(54, true);
  const phnum = view.getUint16(56, true);
  const loads: { vaddr: bigint; offset: bigint; filesz: bigint }[] = [];
  let interpreter: string | undefined;
  let dynamic: { offset: number; size: number } | undefined;
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    const type = view.getUint32(at, true);
    const offset = view.getBigUint64(at + 8, true);
    const vaddr = view.getBigUint64(at + 16, true);
    const filesz = view.getBigUint64(at + 32, true);
    if (type === PT_LOAD) loads.push({ vaddr, offset, filesz });
    else if (type === PT_INTERP) interpreter = cString(bytes, Number(offset));
    else if (type === PT_DYNAMIC) dynamic = { offset: Number(offset), size: Number(filesz) };
  }
  const needed: string[] = [];
  if (dynamic) {
    const entries: { tag: bigint; value: bigint }[] = [];
    for (let at = dynamic.offset; at + 16 <= dynamic.offset + dynamic.size; at += 16) {
      const tag = view.getBigInt64(at, true);
      if (tag === 0n) break;
      entries.push({ tag, value: view.getBigUint64(at + 8, true) });
    }
    const strtab = entries.find((e) => e.tag === DT_STRTAB)?.value;
    const segment = loads.find((l) =>
      strtab !== undefined && strtab >= l.vaddr && strtab < l.vaddr + l.filesz
    );
    if (strtab === undefined || !segment) throw new Error("ELF file has no mapped DT_STRTAB");
    const strtabOffset = Number(strtab - segment.vaddr + segment.offset);
    for (const e of entries) {
      if (e.tag === DT_NEEDED) needed.push(cString(bytes, strtabOffset + Number(e.value)));
    }
  }
  return { machine, interpreter, needed };
}
