export async function connections() { return 'not implemented yet'; }
