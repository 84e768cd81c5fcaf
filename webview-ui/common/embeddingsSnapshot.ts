// What an embeddings view (embeddings.ts) has drawn, as its snapshot() reports it: type-only (no
// DOM), so panel protocols that carry it to their host (Inspect exits' 'state') can name it.

/** What a view draws, in data units (tests compare it with the engine's result). */
export interface EmbeddingsSnapshot {
  /** Points of the sample and extra ones; files: the sample's, then the extra ones. */
  n: number;
  extra: number;
  files: string[];
  exits: {
    exit: number;
    layer: number;
    /** The axis titles as shown ("PC1 (34.2%)"). */
    axes: [string, string];
    /** Point elements drawn (sample + extra). */
    points: number;
    /** [(n + extra) * 2]: every point's position read back from the SVG, in data units. */
    drawn: number[];
    /** Half the data range a plot spans (the read-back positions are good to ~1e-3 of it). */
    halfRange: number;
  }[];
  /** The highlighted image: its index among the sample then the extra points (null: none). */
  highlight: { file: string; index: number; extra: boolean } | null;
  /** The point under the keyboard or mouse (index among the sample then the extra points; -1: none). */
  active: number;
  readout: string;
}
