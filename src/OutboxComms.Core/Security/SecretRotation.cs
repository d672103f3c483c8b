using System.Reflection;
using Microsoft.EntityFrameworkCore;
using OutboxComms.Core.Companies;
using OutboxComms.Core.Data;

namespace OutboxComms.Core.Security;

/// <summary>
/// Re-encrypts every stored secret that is not under the current key (the first in
/// OUTBOXCOMMS_ENCRYPTION_KEY). Run after putting a new key first; once it reports nothing left
/// under the old key, the old key can be dropped from the configuration.
/// </summary>
public sealed class SecretRotation(OutboxDbContext db, SecretProtector secrets)
{
    // Every secret column is a byte[] property named *Encrypted (a schema test holds the columns to that).
    private static readonly PropertyInfo[] SecretProperties = typeof(CompanySettings).GetProperties()
        .Where(p => p.PropertyType == typeof(byte[]) && p.Name.EndsWith("Encrypted", StringComparison.Ordinal))
        .ToArray();

    public sealed record Result(int Companies, int Reencrypted, int AlreadyCurrent);

    public async Task<Result> RotateAsync(CancellationToken cancellationToken)
    {
        int companies = 0, reencrypted = 0, current = 0;
        var ids = await db.CompanySettings.Select(s => s.CompanyId).ToListAsync(cancellationToken);
        foreach (var id in ids)
        {
            // One company per transaction: a crash midway leaves every value readable (old or new key).
            // The row is locked while it is re-encrypted: a settings PUT that stores a new secret
            // meanwhile either waits for this commit or is read here, never overwritten with the old value.
            await using var transaction = await db.Database.BeginTransactionAsync(cancellationToken);
            var settings = (await db.CompanySettings
                .FromSql($"SELECT * FROM company_settings WHERE company_id = {id} FOR NO KEY UPDATE")
                .ToListAsync(cancellationToken)).SingleOrDefault();
            if (settings is null)
            {
                continue; // the company was deleted since the ids were read
            }
            var changed = false;
            foreach (var property in SecretProperties)
            {
                if (property.GetValue(settings) is not byte[] envelope)
                {
                    continue;
                }
                if (secrets.NeedsRotation(envelope))
                {
                    property.SetValue(settings, secrets.Protect(secrets.Unprotect(envelope)));
                    reencrypted++;
                    changed = true;
                }
                else
                {
                    current++;
                }
            }
            if (changed)
            {
                companies++;
                await db.SaveChangesAsync(cancellationToken);
            }
            await transaction.CommitAsync(cancellationToken);
            db.ChangeTracker.Clear();
        }
        return new Result(companies, reencrypted, current);
    }
}
