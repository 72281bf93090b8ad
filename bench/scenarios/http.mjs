export async function http() { return 'not implemented yet'; }
