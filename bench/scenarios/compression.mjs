export async function compression() { return 'not implemented yet'; }
