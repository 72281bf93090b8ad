// Topic names and MQTT-style patterns. Platform-neutral.
//
// A topic is 1..maxLevels levels joined by '/'. Each level is a non-empty run of
// [A-Za-z0-9_.:@~=,-]. A pattern may also use '+' as a whole level (exactly one level) and
// '#' as the whole last level (that level's parent and everything below it, as in MQTT:
// 'a/#' matches 'a', 'a/b' and 'a/b/c').

export interface TopicLimits {
  maxLength: number;
  maxLevels: number;
}

export const DEFAULT_TOPIC_LIMITS: TopicLimits = Object.freeze({ maxLength: 256, maxLevels: 16 });

// 1 for characters allowed inside a level.
const LEVEL_CHARS = new Uint8Array(128);
for (let c = 0; c < 128; c++) {
  const ch = String.fromCharCode(c);
  if (/[A-Za-z0-9_.:@~=,-]/.test(ch)) LEVEL_CHARS[c] = 1;
}
const SLASH = 47;
const PLUS = 43;
const HASH = 35;

/**
 * Validates a topic name (wildcards = false) or a pattern (wildcards = true).
 * Returns null when valid, otherwise a short human-readable reason.
 */
export function topicError(topic: unknown, wildcards: boolean, limits: TopicLimits = DEFAULT_TOPIC_LIMITS): string | null {
  if (typeof topic !== 'string') return 'topic must be a string';
  const n = topic.length;
  if (n === 0) return 'topic is empty';
  if (n > limits.maxLength) return `topic longer than ${limits.maxLength} characters`;
  let levels = 1;
  let levelStart = 0;
  for (let i = 0; i <= n; i++) {
    const c = i === n ? SLASH : topic.charCodeAt(i);
    if (c === SLASH) {
      const len = i - levelStart;
      if (len === 0) return 'topic has an empty level';
      if (i < n && ++levels > limits.maxLevels) return `topic has more than ${limits.maxLevels} levels`;
      levelStart = i + 1;
      continue;
    }
    if (c === PLUS || c === HASH) {
      if (!wildcards) return 'wildcards (+, #) are only allowed in subscription patterns';
      const next = i + 1 === n ? SLASH : topic.charCodeAt(i + 1);
      if (i !== levelStart || next !== SLASH) return 'a wildcard must occupy a whole level';
      if (c === HASH && i + 1 !== n) return "'#' must be the last level";
      continue;
    }
    if (c >= 128 || LEVEL_CHARS[c] === 0) return `invalid character at position ${i}`;
  }
  return null;
}

export function isPattern(topic: string): boolean {
  return topic.indexOf('+') !== -1 || topic.indexOf('#') !== -1;
}

/** Whether a valid topic name matches a valid pattern. */
export function topicMatches(pattern: string, topic: string): boolean {
  if (pattern === topic) return true;
  const p = pattern.split('/');
  const t = topic.split('/');
  for (let i = 0; i < p.length; i++) {
    const seg = p[i];
    if (seg === '#') return true;
    if (i >= t.length) return false;
    if (seg !== '+' && seg !== t[i]) return false;
  }
  return p.length === t.length;
}
