# Run by the deploy with `gitlab-rails runner`: give root the personal access token the deploy uses for
# GitLab's API and for seeding repositories. The value is read from a root-only file, never from here.
value = File.read('/etc/gitlab/lab-api-token').strip
root = User.find_by_username('root')
token = root.personal_access_tokens.find_by(name: 'gitops-lab-deploy') ||
        root.personal_access_tokens.build(name: 'gitops-lab-deploy')
token.scopes = %w[api write_repository]
token.expires_at = 360.days.from_now
token.set_token(value)
token.save!
