/**
 * The hooks a listener's answers-before-routing read (see `edge-answers.ts`), in a module of
 * their own so that the handler can name them without importing the answers (no import circle).
 */

/** Where http-01 challenges are asked for (RFC 8555 section 8.3). */
export const ACME_CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

/** The key authorization for an http-01 `token`, or undefined when none is pending. */
export type ChallengeResponder = (token: string) => string | undefined;

/** A listener's hooks that the runtime may set after it started. */
export interface EdgeHooks {
  challenge: ChallengeResponder | undefined;
}
