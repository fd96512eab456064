/**
 * The training text: sentences of a small synthetic English grammar, generated in code (no data files), and a
 * recognizer that says whether generated text follows the grammar (how well the model learned it).
 *
 *   sentence → NP VP "."         NP → Det [Adj] Noun          PP → Prep NP
 *   VP → Verb NP [PP] | Intransitive [Adverb]
 */

const WORDS = {
  det: ['the', 'a'],
  adj: ['small', 'big', 'red', 'happy', 'old'],
  noun: ['cat', 'dog', 'bird', 'fish', 'child', 'teacher', 'robot'],
  verb: ['sees', 'chases', 'likes', 'finds', 'follows'],
  intransitive: ['sleeps', 'runs', 'sings', 'waits'],
  adverb: ['quietly', 'again', 'today'],
  prep: ['near', 'under', 'with'],
} as const;
type Category = keyof typeof WORDS;

/** Token 0 is the sentence end "."; then every word. */
export const VOCABULARY: string[] = ['.', ...Object.values(WORDS).flat()];
const CATEGORY_OF = new Map<string, Category | 'end'>([['.', 'end']]);
for (const [category, words] of Object.entries(WORDS)) for (const w of words) CATEGORY_OF.set(w, category as Category);

/** Seeded uniform [0, 1) (mulberry32). */
export function makeRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sentence(random: () => number): string[] {
  const pick = (c: Category) => WORDS[c][Math.floor(random() * WORDS[c].length)];
  const nounPhrase = () => [pick('det'), ...(random() < 0.4 ? [pick('adj')] : []), pick('noun')];
  const verbPhrase = () => random() < 0.65 ?
      [pick('verb'), ...nounPhrase(), ...(random() < 0.3 ? [pick('prep'), ...nounPhrase()] : [])] :
      [pick('intransitive'), ...(random() < 0.4 ? [pick('adverb')] : [])];
  return [...nounPhrase(), ...verbPhrase(), '.'];
}

/** A stream of `length` token ids: sentences one after another. */
export function corpus(length: number, seed: number): Int32Array {
  const random = makeRandom(seed);
  const out = new Int32Array(length);
  let n = 0;
  while (n < length) for (const w of sentence(random)) if (n < length) out[n++] = VOCABULARY.indexOf(w);
  return out;
}

const SENTENCE = /^d( a)? n (v d( a)? n( p d( a)? n)?|i( r)?) \.$/;
const LETTER: Record<Category | 'end', string> = {
  det: 'd', adj: 'a', noun: 'n', verb: 'v', intransitive: 'i', adverb: 'r', prep: 'p', end: '.',
};

/** The complete sentences of `tokens` (after the first "."), and how many of them the grammar accepts. */
export function grammaticality(tokens: number[]): {sentences: number; grammatical: number} {
  const words = tokens.map((t) => VOCABULARY[t]);
  let sentences = 0, grammatical = 0, current: string[] | null = null;  // null until the first sentence boundary
  for (const w of words) {
    if (current != null) current.push(LETTER[CATEGORY_OF.get(w)!]);
    if (w === '.') {
      if (current != null) {
        sentences++;
        if (SENTENCE.test(current.join(' '))) grammatical++;
      }
      current = [];
    }
  }
  return {sentences, grammatical};
}
